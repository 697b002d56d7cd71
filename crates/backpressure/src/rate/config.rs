//! [`RateLimitConfig`]: the rate of one limiter, its builder and its
//! validation.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;
use rampart_core::keyed::KeyedConfig;
use rampart_core::metrics::InstanceLabels;
use serde::Deserialize;

use crate::admission::Admission;
use crate::rate::keyed::KeyedRateLimitLayer;
use crate::rate::layer::RateLimitLayer;
use crate::rate::shared::Shared;

/// The longest `period` accepted: one day.
pub const MAX_PERIOD: Duration = Duration::from_secs(86_400);

/// The rate, burst and admission of a GCRA rate limiter.
///
/// Build one with the consuming setters (each says what it defaults to),
/// then call [`build`](Self::build) for a [`RateLimitLayer`] or
/// [`build_keyed`](Self::build_keyed) for one limiter per key. Both refuse
/// bad values with a [`ConfigError`] naming the field.
///
/// It also deserializes (for the mesh's TOML), with every field optional,
/// durations as `"50ms"` or `"1s"` and unknown keys refused:
///
/// ```
/// use rampart_backpressure::{Admission, RateLimitConfig};
/// use std::time::Duration;
///
/// let config: RateLimitConfig = toml::from_str(r#"
///     name = "api"
///     rate = 50
///     period = "1s"
///     burst = 10
///     admission = { wait = "20ms" }
/// "#).unwrap();
/// assert_eq!(config, RateLimitConfig::new()
///     .name("api")
///     .rate(50, Duration::from_secs(1))
///     .burst(10)
///     .admission(Admission::Wait(Duration::from_millis(20))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    name: String,
    rate: u32,
    #[serde(with = "rampart_core::duration")]
    period: Duration,
    burst: u32,
    admission: Admission,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            rate: 100,
            period: Duration::from_secs(1),
            burst: 100,
            admission: Admission::FailFast,
        }
    }
}

impl RateLimitConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The instance name, put on every metric as the `name` label and on
    /// every tracing event. Defaults to `""` (no label).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The sustained rate: `rate` calls per `period`, evenly spaced (one
    /// every `period / rate`). `rate` must be at least 1, `period` longer
    /// than zero and at most [`MAX_PERIOD`], and the spacing at least one
    /// nanosecond. Defaults to 100 per second.
    pub fn rate(mut self, rate: u32, period: Duration) -> Self {
        self.rate = rate;
        self.period = period;
        self
    }

    /// How many calls may go through at once after a quiet spell, above
    /// the even spacing. Must be at least 1 (1 means strict spacing).
    /// Defaults to 100.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// What happens to a call with no token: see [`Admission`]. Defaults
    /// to [`Admission::FailFast`], so that excess load is shed at once.
    pub fn admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }

    /// Checks the values, naming the first field at fault: `rate` is 0 or
    /// spaces calls less than a nanosecond apart, `period` is zero or
    /// above [`MAX_PERIOD`], `burst` is 0, `admission` waits zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        interval(self.rate, self.period)?;
        validate::non_zero("burst", self.burst)?;
        self.admission.validate("admission")
    }

    /// Validates the values and builds one limiter, registering its metric
    /// handles. Every service the layer makes, and every clone, shares it.
    pub fn build(self) -> Result<RateLimitLayer, ConfigError> {
        self.validate()?;
        let labels = InstanceLabels::new(self.name.clone());
        Ok(RateLimitLayer::new(Arc::new(self.shared(&labels))))
    }

    /// Validates the values and builds a keyed limiter: one limiter with
    /// this rate per key that `key` derives from a request, created on
    /// first use and bounded by `keys` (see
    /// [`KeyedMap`](rampart_core::keyed::KeyedMap)). Each key's metrics
    /// carry a `key` label with the key's `Display` form.
    ///
    /// ```
    /// use rampart_backpressure::RateLimitConfig;
    /// use rampart_core::keyed::KeyedConfig;
    /// use std::time::Duration;
    ///
    /// let layer = RateLimitConfig::new()
    ///     .rate(10, Duration::from_secs(1))
    ///     .build_keyed(
    ///         |req: &http::Request<()>| req.uri().host().unwrap_or_default().to_owned(),
    ///         KeyedConfig::default(),
    ///     )
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn build_keyed<Req, K, F>(
        self,
        key: F,
        keys: KeyedConfig,
    ) -> Result<KeyedRateLimitLayer<K, F>, ConfigError>
    where
        F: Fn(&Req) -> K,
        K: Hash + Eq + fmt::Display + Send + Sync + 'static,
    {
        self.validate()?;
        keys.validate()?;
        Ok(KeyedRateLimitLayer::new(self, keys, key))
    }

    pub(crate) fn name_ref(&self) -> &str {
        &self.name
    }

    /// A limiter instance with these (validated) values.
    pub(crate) fn shared(&self, labels: &InstanceLabels) -> Shared {
        Shared::new(
            &self.name,
            self.spacing(),
            self.burst,
            self.admission,
            labels,
        )
    }

    /// The spacing of calls (validated by the caller).
    pub(crate) fn spacing(&self) -> Duration {
        interval(self.rate, self.period).unwrap_or(Duration::from_nanos(1))
    }
}

/// The spacing of `rate` calls per `period`, validated.
pub(crate) fn interval(rate: u32, period: Duration) -> Result<Duration, ConfigError> {
    validate::non_zero("rate", rate)?;
    validate::non_zero_duration("period", period)?;
    if period > MAX_PERIOD {
        return Err(ConfigError::new(
            "period",
            format!("must be at most {MAX_PERIOD:?}, got {period:?}"),
        ));
    }
    let interval = period / rate;
    if interval.is_zero() {
        return Err(ConfigError::new(
            "rate",
            format!("must space calls at least 1ns apart, got {rate} per {period:?}"),
        ));
    }
    Ok(interval)
}

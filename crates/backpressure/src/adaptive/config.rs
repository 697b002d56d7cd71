//! [`AdaptiveLimitConfig`]: the AIMD parameters of one adaptive limiter.

use std::sync::Arc;
use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;
use rampart_core::metrics::InstanceLabels;
use serde::Deserialize;

use crate::adaptive::service::AdaptiveLimitLayer;
use crate::adaptive::shared::Shared;
use crate::admission::Admission;

/// How an [`AdaptiveLimitConfig`] adapts its limit.
///
/// In TOML: `algorithm = "aimd"` or `algorithm = "vegas"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Additive increase, multiplicative decrease, driven by drops
    /// (failed calls and calls over the latency threshold).
    Aimd,
    /// TCP Vegas, driven by latency: at most once per round trip, the
    /// limit follows the estimated queue at the inner service,
    /// `limit × (1 − rtt_min / rtt)`: it grows by 6 × log10 limit when
    /// there is (almost) no queue, by log10 limit while the queue is below
    /// 3 × log10 limit, and shrinks by log10 limit when it is above
    /// 6 × log10 limit (log10 limit counts at least 1). Drops shrink it by
    /// log10 limit too. `rtt_min` is the shortest latency seen since the
    /// limiter was built, taken as the inner service's latency without
    /// queueing: Vegas suits services whose unloaded latency is stable.
    Vegas,
}

/// The largest `max_limit` accepted.
pub const MAX_LIMIT: usize = 1_000_000_000;

/// An adaptive concurrency limit that finds the concurrency the inner
/// service sustains, as TCP congestion control and Netflix's
/// concurrency-limits do: AIMD by default, or [`Algorithm::Vegas`].
///
/// With AIMD, every completed call is a sample. A call that failed or took longer
/// than [`latency_threshold`](Self::latency_threshold) is a *drop*: the
/// limit shrinks to `limit × backoff_ratio` (at least `min_limit`), once
/// per round trip: drops of calls that started before the last decrease
/// do not shrink it again, so one overload episode does not collapse it.
/// Any other call, completed while at least half the limit was in use,
/// grows the limit by `1 / limit`, so about one call per round trip (at
/// most `max_limit`). A call cancelled before it completes is no sample.
///
/// Build with the consuming setters (each says what it defaults to), then
/// [`build`](Self::build), which refuses bad values with a [`ConfigError`]
/// naming the field. It also deserializes, unknown keys refused:
///
/// ```
/// use rampart_backpressure::{AdaptiveLimitConfig, Admission};
/// use std::time::Duration;
///
/// let config: AdaptiveLimitConfig = toml::from_str(r#"
///     initial_limit = 10
///     max_limit = 200
///     latency_threshold = "250ms"
///     admission = "backpressure"
/// "#).unwrap();
/// assert_eq!(config, AdaptiveLimitConfig::new()
///     .initial_limit(10)
///     .max_limit(200)
///     .latency_threshold(Duration::from_millis(250))
///     .admission(Admission::Backpressure));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveLimitConfig {
    name: String,
    initial_limit: usize,
    min_limit: usize,
    max_limit: usize,
    backoff_ratio: f64,
    #[serde(with = "rampart_core::duration")]
    latency_threshold: Duration,
    admission: Admission,
    algorithm: Algorithm,
}

impl Default for AdaptiveLimitConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            initial_limit: 20,
            min_limit: 1,
            max_limit: 1000,
            backoff_ratio: 0.9,
            latency_threshold: Duration::from_secs(1),
            admission: Admission::FailFast,
            algorithm: Algorithm::Aimd,
        }
    }
}

impl AdaptiveLimitConfig {
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

    /// The limit to start with. Must lie within `min_limit..=max_limit`.
    /// Defaults to 20.
    pub fn initial_limit(mut self, limit: usize) -> Self {
        self.initial_limit = limit;
        self
    }

    /// The limit never shrinks below this. Must be at least 1. Defaults
    /// to 1.
    pub fn min_limit(mut self, limit: usize) -> Self {
        self.min_limit = limit;
        self
    }

    /// The limit never grows above this. Must be at least `min_limit` and
    /// at most [`MAX_LIMIT`]. Defaults to 1000.
    pub fn max_limit(mut self, limit: usize) -> Self {
        self.max_limit = limit;
        self
    }

    /// The factor the limit shrinks by on a drop. Must lie within
    /// `0.5..1.0`. Defaults to 0.9.
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }

    /// A call slower than this counts as a drop (a sign of overload).
    /// Set it somewhat above the inner service's healthy latency. Must be
    /// longer than zero. Defaults to 1 second.
    pub fn latency_threshold(mut self, threshold: Duration) -> Self {
        self.latency_threshold = threshold;
        self
    }

    /// What happens to a call when the limit is reached: see
    /// [`Admission`]. Defaults to [`Admission::FailFast`].
    pub fn admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }

    /// How the limit adapts: see [`Algorithm`]. Defaults to
    /// [`Algorithm::Aimd`].
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Checks the values, naming the first field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero("min_limit", self.min_limit as u64)?;
        validate::at_most("max_limit", self.max_limit as u64, MAX_LIMIT as u64)?;
        if self.max_limit < self.min_limit {
            return Err(ConfigError::new(
                "max_limit",
                format!(
                    "must be at least min_limit ({}), got {}",
                    self.min_limit, self.max_limit
                ),
            ));
        }
        if !(self.min_limit..=self.max_limit).contains(&self.initial_limit) {
            return Err(ConfigError::new(
                "initial_limit",
                format!(
                    "must be within min_limit..=max_limit ({}..={}), got {}",
                    self.min_limit, self.max_limit, self.initial_limit
                ),
            ));
        }
        if !(0.5..1.0).contains(&self.backoff_ratio) {
            return Err(ConfigError::new(
                "backoff_ratio",
                format!("must be within 0.5..1.0, got {}", self.backoff_ratio),
            ));
        }
        validate::non_zero_duration("latency_threshold", self.latency_threshold)?;
        self.admission.validate("admission")
    }

    /// Validates the values and builds the limiter, registering its metric
    /// handles. Every service the layer makes, and every clone, shares it.
    pub fn build(self) -> Result<AdaptiveLimitLayer, ConfigError> {
        self.validate()?;
        let labels = InstanceLabels::new(self.name.clone());
        Ok(AdaptiveLimitLayer::new(Arc::new(Shared::new(
            self, &labels,
        ))))
    }

    pub(crate) fn name_ref(&self) -> &str {
        &self.name
    }

    pub(crate) fn params(&self) -> Params {
        Params {
            initial_limit: self.initial_limit,
            min_limit: self.min_limit,
            max_limit: self.max_limit,
            backoff_ratio: self.backoff_ratio,
            latency_threshold: self.latency_threshold,
            admission: self.admission,
            algorithm: self.algorithm,
        }
    }
}

/// The validated parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    pub(crate) initial_limit: usize,
    pub(crate) min_limit: usize,
    pub(crate) max_limit: usize,
    pub(crate) backoff_ratio: f64,
    pub(crate) latency_threshold: Duration,
    pub(crate) admission: Admission,
    pub(crate) algorithm: Algorithm,
}

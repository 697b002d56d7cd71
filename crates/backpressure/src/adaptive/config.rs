//! [`AdaptiveLimitConfig`]: the parameters of one adaptive limiter, its
//! builder and its validation.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;
use rampart_core::keyed::KeyedConfig;
use rampart_core::metrics::InstanceLabels;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::adaptive::keyed::KeyedAdaptiveLimitLayer;
use crate::adaptive::service::AdaptiveLimitLayer;
use crate::adaptive::shared::Shared;
use crate::admission::Admission;

/// How an [`AdaptiveLimitConfig`] adapts its limit.
///
/// In TOML: `algorithm = "aimd"`, `algorithm = "vegas"` or
/// `algorithm = "gradient2"`.
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
    /// Netflix's Gradient2, driven by how the latency of the last round
    /// trip compares with a long-term average of it, which it keeps
    /// re-learning: a service that becomes slower but stays healthy gets
    /// its limit back, where Vegas, measuring against the fastest latency
    /// ever seen, would keep shrinking it.
    ///
    /// Once per round trip, with `short` the mean latency of the calls of
    /// that round trip and `long` an exponential average of `short` over
    /// [`long_window`](AdaptiveLimitConfig::long_window) round trips:
    ///
    /// - `gradient = clamp(rtt_tolerance × long / short, 0.5, 1.0)`, so
    ///   latency up to `rtt_tolerance` times the average counts as no
    ///   queueing, and the limit at most halves per step;
    /// - `target = limit × gradient + queue_size`, and the limit moves
    ///   towards it by [`smoothing`](AdaptiveLimitConfig::smoothing):
    ///   `limit = limit × (1 − smoothing) + target × smoothing`, within
    ///   `min_limit..=max_limit`;
    /// - when `long` is more than twice `short`, the load that inflated it
    ///   is gone, and it shrinks by 5 % per round trip on top of the
    ///   average, so that a new, lower base latency is learnt quickly.
    ///
    /// A round trip with fewer than half the limit in flight only feeds the
    /// average. One with a drop (a failed call, or one slower than
    /// `latency_threshold`) takes the gradient 0.5, whatever the load:
    /// Netflix's version ignores drops, which would let a service that
    /// fails fast look healthy; drops' latencies are left out of `short`.
    ///
    /// Because `long` follows the latency, a latency that climbs slower
    /// than the long window is taken for the new normal, including one
    /// that the limit itself causes: under sustained saturation the limit
    /// creeps up by about a call every few seconds. A longer window creeps
    /// slower and re-learns a new base latency slower.
    Gradient2,
}

/// How much [`Algorithm::Gradient2`]'s limit may grow per round trip while
/// latency stays low: the allowance for queueing added to the target.
///
/// In TOML: a number (`queue_size = 4`) or `queue_size = "sqrt"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueSize {
    /// A fixed number of calls, at least 1.
    Fixed(u32),
    /// The square root of the current limit (at least 1): small limits
    /// grow slowly, large ones faster.
    Sqrt,
}

impl<'de> Deserialize<'de> for QueueSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QueueSizeVisitor;

        impl Visitor<'_> for QueueSizeVisitor {
            type Value = QueueSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of calls or \"sqrt\"")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<QueueSize, E> {
                u32::try_from(n)
                    .map(QueueSize::Fixed)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &self))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<QueueSize, E> {
                u64::try_from(n)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
                    .and_then(|n| self.visit_u64(n))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<QueueSize, E> {
                match s {
                    "sqrt" => Ok(QueueSize::Sqrt),
                    _ => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
                }
            }
        }

        deserializer.deserialize_any(QueueSizeVisitor)
    }
}

/// The largest `max_limit` accepted.
pub const MAX_LIMIT: usize = 1_000_000_000;

/// The largest [`long_window`](AdaptiveLimitConfig::long_window) accepted.
pub const MAX_LONG_WINDOW: u32 = 1_000_000;

/// An adaptive concurrency limit that finds the concurrency the inner
/// service sustains, as TCP congestion control and Netflix's
/// concurrency-limits do: AIMD by default, [`Algorithm::Vegas`] or
/// [`Algorithm::Gradient2`].
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
/// [`build`](Self::build) (or [`build_keyed`](Self::build_keyed) for one
/// limiter per key), which refuses bad values with a [`ConfigError`]
/// naming the field. It also deserializes, unknown keys refused:
///
/// ```
/// use rampart_backpressure::{AdaptiveLimitConfig, Admission, Algorithm};
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
///
/// // Gradient2, with Netflix's defaults spelled out.
/// let config: AdaptiveLimitConfig = toml::from_str(r#"
///     algorithm = "gradient2"
///     smoothing = 0.2
///     rtt_tolerance = 1.5
///     long_window = 600
///     queue_size = 4       # or "sqrt"
/// "#).unwrap();
/// assert_eq!(config, AdaptiveLimitConfig::new().algorithm(Algorithm::Gradient2));
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
    smoothing: f64,
    rtt_tolerance: f64,
    long_window: u32,
    queue_size: QueueSize,
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
            smoothing: 0.2,
            rtt_tolerance: 1.5,
            long_window: 600,
            queue_size: QueueSize::Fixed(4),
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

    /// The factor the limit shrinks by on a drop, with
    /// [`Algorithm::Aimd`]. Must lie within `0.5..1.0`. Defaults to 0.9.
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

    /// How far [`Algorithm::Gradient2`]'s limit moves towards its target
    /// per round trip: 1 jumps to it. Must lie within `0.0..=1.0`, above
    /// zero. Defaults to 0.2.
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// How many times its long-term average [`Algorithm::Gradient2`] takes
    /// a round trip's latency to be before it shrinks the limit. Must be
    /// at least 1.0 and finite. Defaults to 1.5.
    pub fn rtt_tolerance(mut self, tolerance: f64) -> Self {
        self.rtt_tolerance = tolerance;
        self
    }

    /// Over how many round trips [`Algorithm::Gradient2`] averages latency
    /// into its long-term base: how fast it learns that the service became
    /// slower or faster for good. Must lie within `1..=`[`MAX_LONG_WINDOW`].
    /// Defaults to 600.
    pub fn long_window(mut self, round_trips: u32) -> Self {
        self.long_window = round_trips;
        self
    }

    /// How much [`Algorithm::Gradient2`]'s limit may grow while latency
    /// stays low: see [`QueueSize`]. A fixed size must be at least 1.
    /// Defaults to `QueueSize::Fixed(4)`.
    pub fn queue_size(mut self, queue_size: QueueSize) -> Self {
        self.queue_size = queue_size;
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
        self.admission.validate("admission")?;
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return Err(ConfigError::new(
                "smoothing",
                format!(
                    "must be within 0.0..=1.0 and above zero, got {}",
                    self.smoothing
                ),
            ));
        }
        if !(self.rtt_tolerance >= 1.0 && self.rtt_tolerance.is_finite()) {
            return Err(ConfigError::new(
                "rtt_tolerance",
                format!(
                    "must be at least 1.0 and finite, got {}",
                    self.rtt_tolerance
                ),
            ));
        }
        validate::non_zero("long_window", self.long_window)?;
        validate::at_most(
            "long_window",
            u64::from(self.long_window),
            u64::from(MAX_LONG_WINDOW),
        )?;
        if self.queue_size == QueueSize::Fixed(0) {
            return Err(ConfigError::new(
                "queue_size",
                "must be at least 1 (or \"sqrt\"), or the limit could never grow",
            ));
        }
        Ok(())
    }

    /// Validates the values and builds the limiter, registering its metric
    /// handles. Every service the layer makes, and every clone, shares it.
    pub fn build(self) -> Result<AdaptiveLimitLayer, ConfigError> {
        self.validate()?;
        let labels = InstanceLabels::new(self.name.clone());
        Ok(AdaptiveLimitLayer::new(Arc::new(Shared::new(
            self.name.clone(),
            self.params(),
            &labels,
        ))))
    }

    /// Validates the values and builds a keyed limiter: one independent
    /// adaptive limiter with these values per key that `key` derives from a
    /// request (a tenant, a route), created on first use and bounded by
    /// `keys` (see [`KeyedMap`](rampart_core::keyed::KeyedMap)). One key's
    /// slow or failing calls shrink only its own limit. Each key's metrics
    /// carry a `key` label with the key's `Display` form.
    ///
    /// ```
    /// use rampart_backpressure::{AdaptiveLimitConfig, Algorithm};
    /// use rampart_core::keyed::KeyedConfig;
    ///
    /// let layer = AdaptiveLimitConfig::new()
    ///     .algorithm(Algorithm::Gradient2)
    ///     .build_keyed(
    ///         |req: &http::Request<()>| req.uri().path().to_owned(),
    ///         KeyedConfig::default(),
    ///     )
    ///     .unwrap();
    /// assert!(layer.handle().is_empty());
    /// ```
    pub fn build_keyed<Req, K, F>(
        self,
        key: F,
        keys: KeyedConfig,
    ) -> Result<KeyedAdaptiveLimitLayer<K, F>, ConfigError>
    where
        F: Fn(&Req) -> K,
        K: Hash + Eq + fmt::Display + Send + Sync + 'static,
    {
        self.validate()?;
        keys.validate()?;
        Ok(KeyedAdaptiveLimitLayer::new(self, keys, key))
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
            smoothing: self.smoothing,
            rtt_tolerance: self.rtt_tolerance,
            long_window: self.long_window,
            queue_size: self.queue_size,
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
    pub(crate) smoothing: f64,
    pub(crate) rtt_tolerance: f64,
    pub(crate) long_window: u32,
    pub(crate) queue_size: QueueSize,
}

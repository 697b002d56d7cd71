//! [`BalanceConfig`]: the balancer's settings.

use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;
use serde::Deserialize;

use crate::health::{OutlierConfig, PanicThreshold, SlowStartConfig};

/// The settings of a [`Balance`](crate::Balance).
///
/// Deserializes from TOML with every field optional, durations as `"30ms"`
/// (an integer is milliseconds) and unknown keys refused:
///
/// ```
/// use std::time::Duration;
/// use rampart_balance::BalanceConfig;
///
/// let config: BalanceConfig = toml::from_str(r#"
///     name = "orders"
///     max_wait = "250ms"
///     failure_penalty = "2s"
/// "#).unwrap();
/// assert_eq!(config, BalanceConfig::new()
///     .name("orders")
///     .max_wait(Duration::from_millis(250))
///     .failure_penalty(Duration::from_secs(2)));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BalanceConfig {
    pub(crate) name: String,
    #[serde(with = "rampart_core::duration")]
    pub(crate) max_wait: Duration,
    #[serde(with = "rampart_core::duration")]
    pub(crate) default_rtt: Duration,
    #[serde(with = "rampart_core::duration")]
    pub(crate) decay: Duration,
    #[serde(with = "rampart_core::duration")]
    pub(crate) failure_penalty: Duration,
    #[serde(with = "rampart_core::duration")]
    pub(crate) max_retry_after: Duration,
    pub(crate) seed: Option<u64>,
    pub(crate) outlier: Option<OutlierConfig>,
    pub(crate) panic_threshold: PanicThreshold,
    pub(crate) slow_start: SlowStartConfig,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            max_wait: Duration::ZERO,
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(10),
            failure_penalty: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(30),
            seed: None,
            outlier: None,
            panic_threshold: PanicThreshold::default(),
            slow_start: SlowStartConfig::default(),
        }
    }
}

impl BalanceConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The balancer's name, put on every metric as the `name` label.
    /// Defaults to `""`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long `poll_ready` waits for a ready, routable endpoint before it
    /// fails with [`NoEndpoints`](crate::NoEndpoints) or
    /// [`NoReadyEndpoint`](crate::NoReadyEndpoint). Zero (the default)
    /// fails at once, as Envoy answers "no healthy upstream"; a wait is
    /// backpressure with a bound, never a hang.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The latency a new endpoint is assumed to have until it answers
    /// (peak EWMA's prior). Must be longer than zero. Defaults to 30 ms.
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.default_rtt = rtt;
        self
    }

    /// Peak EWMA's decay time: how fast old latencies lose weight. Must be
    /// longer than zero. Defaults to 10 s.
    pub fn decay(mut self, decay: Duration) -> Self {
        self.decay = decay;
        self
    }

    /// The latency a failed call counts as when it failed faster: a fast
    /// 5xx or 429 must not make an endpoint look fast. Defaults to 1 s.
    pub fn failure_penalty(mut self, penalty: Duration) -> Self {
        self.failure_penalty = penalty;
        self
    }

    /// The longest `Retry-After` an endpoint's answer can take it out of
    /// rotation for. Defaults to 30 s.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The seed of the balancer's random choices, so a test repeats
    /// exactly. Defaults to a fresh seed per balancer.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Passive health: eject endpoints whose answers fail (consecutive
    /// failures, a success rate below the fleet's, a failure percentage)
    /// for a time that grows with repeated ejections. Off by default, as in
    /// Envoy; `[outlier]` in TOML.
    pub fn outlier(mut self, outlier: OutlierConfig) -> Self {
        self.outlier = Some(outlier);
        self
    }

    /// When fewer than this share of the endpoints are healthy (not
    /// ejected, not backing off), balance across every ready endpoint
    /// instead: a mostly-ejected pool would overload the few left.
    /// Defaults to 50 %, as in Envoy.
    pub fn panic_threshold(mut self, threshold: PanicThreshold) -> Self {
        self.panic_threshold = threshold;
        self
    }

    /// Ramps the weight of a new or re-admitted endpoint up over a window.
    /// Off by default.
    pub fn slow_start(mut self, slow_start: SlowStartConfig) -> Self {
        self.slow_start = slow_start;
        self
    }

    /// Checks the settings, naming the first field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero_duration("default_rtt", self.default_rtt)?;
        validate::non_zero_duration("decay", self.decay)?;
        if let Some(outlier) = &self.outlier {
            outlier.validate()?;
        }
        self.slow_start.validate()?;
        Ok(())
    }
}

//! Outlier detection configuration: Envoy's names and defaults, setters,
//! validation, TOML.

use std::time::Duration;

use rampart_core::error::{ConfigError, validate};
use serde::Deserialize;

/// The longest ejection (`max_ejection_time` plus its jitter) the detector
/// accepts: one year, so that `now + ejection` can never overflow.
pub const MAX_EJECTION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The configuration of an [`OutlierDetector`](super::OutlierDetector).
///
/// The field names and defaults are Envoy's `outlier_detection` ones, with
/// `5xx` spelled `failures` (a failure is whatever the balancer's
/// [`Classify`](rampart_core::Classify) says) and percentages as whole
/// numbers `0..=100`. Two defaults differ from Envoy, on purpose:
///
/// - `enforcing_failure_percentage` is 100 (Envoy: 0, detection only), so
///   an endpoint failing 85 % of a busy interval is ejected out of the box;
/// - `always_eject_one_host` is `true` (Envoy: `false`), so that with the
///   10 % default a pool of fewer than ten endpoints can still eject one.
///   The pool is never emptied all the same: see
///   [`max_ejected`](Self::max_ejected).
///
/// Every setter says its default; [`validate`](Self::validate) names the
/// first field it refuses. The same fields load from TOML (durations as
/// `"30s"`), unknown keys refused:
///
/// ```
/// use rampart_balance::health::OutlierConfig;
/// use std::time::Duration;
///
/// let cfg: OutlierConfig = toml::from_str(r#"
///     consecutive_failures = 3
///     interval = "5s"
///     base_ejection_time = "10s"
///     max_ejection_percent = 50
/// "#).unwrap();
/// cfg.validate().unwrap();
/// assert_eq!(cfg, OutlierConfig::new()
///     .consecutive_failures(3)
///     .interval(Duration::from_secs(5))
///     .base_ejection_time(Duration::from_secs(10))
///     .max_ejection_percent(50));
///
/// let err = toml::from_str::<OutlierConfig>("max_ejection_percent = 101").unwrap()
///     .validate().unwrap_err();
/// assert_eq!(err.field(), "max_ejection_percent");
/// assert!(toml::from_str::<OutlierConfig>("consecutive_5xx = 5").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierConfig {
    pub(crate) consecutive_failures: u32,
    pub(crate) enforcing_consecutive_failures: u32,
    #[serde(with = "rampart_core::duration")]
    pub(crate) interval: Duration,
    #[serde(with = "rampart_core::duration")]
    pub(crate) base_ejection_time: Duration,
    #[serde(with = "rampart_core::duration")]
    pub(crate) max_ejection_time: Duration,
    #[serde(with = "rampart_core::duration")]
    pub(crate) max_ejection_time_jitter: Duration,
    pub(crate) max_ejection_percent: u32,
    pub(crate) always_eject_one_host: bool,
    pub(crate) success_rate_minimum_hosts: u32,
    pub(crate) success_rate_request_volume: u32,
    pub(crate) success_rate_stdev_factor: f64,
    pub(crate) enforcing_success_rate: u32,
    pub(crate) failure_percentage_threshold: u32,
    pub(crate) failure_percentage_minimum_hosts: u32,
    pub(crate) failure_percentage_request_volume: u32,
    pub(crate) enforcing_failure_percentage: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            enforcing_consecutive_failures: 100,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_time_jitter: Duration::ZERO,
            max_ejection_percent: 10,
            always_eject_one_host: true,
            success_rate_minimum_hosts: 5,
            success_rate_request_volume: 100,
            success_rate_stdev_factor: 1.9,
            enforcing_success_rate: 100,
            failure_percentage_threshold: 85,
            failure_percentage_minimum_hosts: 5,
            failure_percentage_request_volume: 50,
            enforcing_failure_percentage: 100,
        }
    }
}

impl OutlierConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Eject an endpoint after `n` failures in a row (≥ 1). Defaults to 5.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = n;
        self
    }

    /// Enforce a consecutive-failures ejection with this probability, in
    /// percent (0 = detect and count only). Defaults to 100.
    pub fn enforcing_consecutive_failures(mut self, percent: u32) -> Self {
        self.enforcing_consecutive_failures = percent;
        self
    }

    /// How often the success-rate and failure-percentage statistics are
    /// judged and reset, and ejection multipliers decay (> 0). Defaults to
    /// 10 s.
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d;
        self
    }

    /// The first ejection's length; the n-th ejection in a row lasts
    /// `n × base` (> 0). Defaults to 30 s.
    pub fn base_ejection_time(mut self, d: Duration) -> Self {
        self.base_ejection_time = d;
        self
    }

    /// The cap on `n × base_ejection_time` (at least
    /// `base_ejection_time`). Defaults to 300 s.
    pub fn max_ejection_time(mut self, d: Duration) -> Self {
        self.max_ejection_time = d;
        self
    }

    /// Add a random time in `[0, jitter]` to each ejection, so endpoints
    /// ejected together do not return together. Defaults to 0.
    pub fn max_ejection_time_jitter(mut self, jitter: Duration) -> Self {
        self.max_ejection_time_jitter = jitter;
        self
    }

    /// Never eject more than this percentage of the endpoints (0–100;
    /// see [`max_ejected`](Self::max_ejected)). Defaults to 10.
    pub fn max_ejection_percent(mut self, percent: u32) -> Self {
        self.max_ejection_percent = percent;
        self
    }

    /// Allow one ejection even when `max_ejection_percent` of the pool is
    /// less than one endpoint (still never the last endpoint). Defaults to
    /// `true` (Envoy: `false`).
    pub fn always_eject_one_host(mut self, yes: bool) -> Self {
        self.always_eject_one_host = yes;
        self
    }

    /// Judge success rates only when at least `n` endpoints had
    /// `success_rate_request_volume` requests in the interval (≥ 1).
    /// Defaults to 5.
    pub fn success_rate_minimum_hosts(mut self, n: u32) -> Self {
        self.success_rate_minimum_hosts = n;
        self
    }

    /// An endpoint takes part in success-rate detection with at least `n`
    /// requests in the interval (≥ 1). Defaults to 100.
    pub fn success_rate_request_volume(mut self, n: u32) -> Self {
        self.success_rate_request_volume = n;
        self
    }

    /// Eject endpoints whose success rate is below `mean − factor × stdev`
    /// of the judged endpoints (finite, ≥ 0). Defaults to 1.9 (Envoy's
    /// `success_rate_stdev_factor` of 1900, in thousandths).
    pub fn success_rate_stdev_factor(mut self, factor: f64) -> Self {
        self.success_rate_stdev_factor = factor;
        self
    }

    /// Enforce a success-rate ejection with this probability, in percent.
    /// Defaults to 100.
    pub fn enforcing_success_rate(mut self, percent: u32) -> Self {
        self.enforcing_success_rate = percent;
        self
    }

    /// Eject endpoints whose failures reach this percentage of their
    /// requests in the interval (0–100). Defaults to 85.
    pub fn failure_percentage_threshold(mut self, percent: u32) -> Self {
        self.failure_percentage_threshold = percent;
        self
    }

    /// Judge failure percentages only when at least `n` endpoints had
    /// `failure_percentage_request_volume` requests in the interval (≥ 1).
    /// Defaults to 5.
    pub fn failure_percentage_minimum_hosts(mut self, n: u32) -> Self {
        self.failure_percentage_minimum_hosts = n;
        self
    }

    /// An endpoint takes part in failure-percentage detection with at least
    /// `n` requests in the interval (≥ 1). Defaults to 50.
    pub fn failure_percentage_request_volume(mut self, n: u32) -> Self {
        self.failure_percentage_request_volume = n;
        self
    }

    /// Enforce a failure-percentage ejection with this probability, in
    /// percent. Defaults to 100 (Envoy: 0).
    pub fn enforcing_failure_percentage(mut self, percent: u32) -> Self {
        self.enforcing_failure_percentage = percent;
        self
    }

    /// The interval between two evaluations.
    pub fn interval_duration(&self) -> Duration {
        self.interval
    }

    /// How many of `endpoints` may be ejected at once:
    ///
    /// ```text
    /// floor(endpoints × max_ejection_percent / 100)
    ///   raised to 1 when always_eject_one_host,
    ///   lowered to endpoints − 1 (never the last endpoint; 0 of 0)
    /// ```
    ///
    /// So 10 % of 25 endpoints is 2; of 5 endpoints 0, or 1 with
    /// `always_eject_one_host`; 100 % of 4 is 3. An ejection that would
    /// exceed it is refused (counted in
    /// `rampart_balance_ejections_overflow_total`).
    pub fn max_ejected(&self, endpoints: usize) -> usize {
        let by_percent = endpoints.saturating_mul(self.max_ejection_percent as usize) / 100;
        let floor = usize::from(self.always_eject_one_host);
        by_percent.max(floor).min(endpoints.saturating_sub(1))
    }

    /// Checks the configuration, naming the first field it refuses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero("consecutive_failures", self.consecutive_failures)?;
        percent(
            "enforcing_consecutive_failures",
            self.enforcing_consecutive_failures,
        )?;
        validate::non_zero_duration("interval", self.interval)?;
        validate::non_zero_duration("base_ejection_time", self.base_ejection_time)?;
        if self.max_ejection_time < self.base_ejection_time {
            return Err(ConfigError::new(
                "max_ejection_time",
                "must not be shorter than base_ejection_time",
            ));
        }
        if self
            .max_ejection_time
            .checked_add(self.max_ejection_time_jitter)
            .is_none_or(|longest| longest > MAX_EJECTION)
        {
            return Err(ConfigError::new(
                "max_ejection_time",
                "plus max_ejection_time_jitter must be at most one year",
            ));
        }
        percent("max_ejection_percent", self.max_ejection_percent)?;
        validate::non_zero(
            "success_rate_minimum_hosts",
            self.success_rate_minimum_hosts,
        )?;
        validate::non_zero(
            "success_rate_request_volume",
            self.success_rate_request_volume,
        )?;
        let factor = self.success_rate_stdev_factor;
        if !(factor.is_finite() && factor >= 0.0) {
            return Err(ConfigError::new(
                "success_rate_stdev_factor",
                format!("must be a finite number ≥ 0, got {factor}"),
            ));
        }
        percent("enforcing_success_rate", self.enforcing_success_rate)?;
        percent(
            "failure_percentage_threshold",
            self.failure_percentage_threshold,
        )?;
        validate::non_zero(
            "failure_percentage_minimum_hosts",
            self.failure_percentage_minimum_hosts,
        )?;
        validate::non_zero(
            "failure_percentage_request_volume",
            self.failure_percentage_request_volume,
        )?;
        percent(
            "enforcing_failure_percentage",
            self.enforcing_failure_percentage,
        )?;
        Ok(())
    }
}

fn percent(field: &'static str, value: u32) -> Result<(), ConfigError> {
    validate::at_most(field, u64::from(value), 100).map(drop)
}

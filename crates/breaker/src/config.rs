//! Breaker configuration: defaults, setters, validation, TOML.

use std::time::Duration;

use rampart_core::clock::nanos;
use rampart_core::error::{ConfigError, validate};
use serde::Deserialize;

use crate::core::{MAX_TRIALS, OpenPolicy, Thresholds};
use crate::layer::BreakerLayer;
use crate::window::{CountWindow, TimeWindow, Window};

/// Which calls the breaker judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowConfig {
    /// The last `size` calls.
    Count {
        /// Calls in the window (≥ 1).
        size: u32,
    },
    /// The calls of the last `length`, kept in `buckets` buckets (the
    /// window slides one bucket at a time).
    Time {
        /// The window's length (> 0).
        #[serde(with = "rampart_core::duration")]
        length: Duration,
        /// Buckets in the ring (1..=3600); more buckets slide more smoothly.
        buckets: u32,
    },
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig::Count { size: 100 }
    }
}

/// What a breaker does with a call while it is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectMode {
    /// `poll_ready` says ready and the call fails at once with
    /// [`BreakerOpen`](crate::BreakerOpen) (or the fallback answers).
    #[default]
    FailFast,
    /// `poll_ready` returns `Pending` while the breaker is open and wakes
    /// the caller when a trial call is allowed, like a readiness gate in
    /// linkerd2-proxy; a `tower::buffer` or load balancer in front then
    /// routes around it or applies backpressure.
    Backpressure,
}

/// The configuration of a circuit breaker.
///
/// Every setter says its default. `build()` checks the whole and names the
/// first field it refuses. The same fields load from TOML (durations as
/// `"250ms"`, `"30s"`), unknown keys refused:
///
/// ```
/// use rampart_breaker::BreakerConfig;
///
/// let cfg: BreakerConfig = toml::from_str(r#"
///     name = "payments"
///     failure_rate_threshold = 0.25
///     minimum_calls = 10
///     slow_call_duration = "800ms"
///     open_duration = "5s"
///     window = { kind = "time", length = "10s", buckets = 10 }
/// "#).unwrap();
/// let layer = cfg.build().unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    pub(crate) name: String,
    pub(crate) window: WindowConfig,
    pub(crate) failure_rate_threshold: f64,
    pub(crate) slow_call_rate_threshold: f64,
    #[serde(with = "rampart_core::duration::option")]
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) minimum_calls: u32,
    pub(crate) consecutive_failures: Option<u32>,
    #[serde(with = "rampart_core::duration")]
    pub(crate) open_duration: Duration,
    #[serde(with = "rampart_core::duration::option")]
    pub(crate) max_open_duration: Option<Duration>,
    pub(crate) open_duration_multiplier: f64,
    pub(crate) open_duration_jitter: f64,
    pub(crate) half_open_max_calls: u32,
    pub(crate) half_open_success_ratio: f64,
    #[serde(with = "rampart_core::duration")]
    pub(crate) half_open_max_duration: Duration,
    pub(crate) reject_mode: RejectMode,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            window: WindowConfig::default(),
            failure_rate_threshold: 0.5,
            slow_call_rate_threshold: 1.0,
            slow_call_duration: None,
            minimum_calls: 20,
            consecutive_failures: None,
            open_duration: Duration::from_secs(30),
            max_open_duration: None,
            open_duration_multiplier: 1.0,
            open_duration_jitter: 0.0,
            half_open_max_calls: 3,
            half_open_success_ratio: 1.0,
            half_open_max_duration: Duration::from_secs(60),
            reject_mode: RejectMode::FailFast,
        }
    }
}

impl BreakerConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// A name for logs and metric labels. Defaults to none.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Judge the last `size` calls (1–1,000,000; at least
    /// [`minimum_calls`](Self::minimum_calls)). Defaults to a count window
    /// of 100.
    pub fn count_window(mut self, size: u32) -> Self {
        self.window = WindowConfig::Count { size };
        self
    }

    /// Judge the calls of the last `length`, kept in `buckets` buckets.
    /// Defaults to a count window of 100.
    pub fn time_window(mut self, length: Duration, buckets: u32) -> Self {
        self.window = WindowConfig::Time { length, buckets };
        self
    }

    /// Trip when the share of failed calls in the window reaches `rate`
    /// (0.0–1.0). Defaults to 0.5.
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        self.failure_rate_threshold = rate;
        self
    }

    /// Count a call lasting at least `duration` as slow, and trip when the
    /// share of slow calls reaches `rate` (0.0–1.0). Defaults to no slow-call
    /// detection.
    pub fn slow_calls(mut self, duration: Duration, rate: f64) -> Self {
        self.slow_call_duration = Some(duration);
        self.slow_call_rate_threshold = rate;
        self
    }

    /// Judge rates only once the window holds at least `n` calls. Defaults
    /// to 20.
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = n;
        self
    }

    /// Also trip after `n` failures in a row, whatever the rate. Defaults
    /// to off.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = Some(n);
        self
    }

    /// Stay open this long before allowing trial calls. Defaults to 30 s.
    pub fn open_duration(mut self, d: Duration) -> Self {
        self.open_duration = d;
        self
    }

    /// Grow the open duration by `multiplier` for each opening that follows
    /// a failed half-open trial, up to `max`. Defaults to a fixed duration
    /// (multiplier 1.0).
    pub fn open_duration_growth(mut self, multiplier: f64, max: Duration) -> Self {
        self.open_duration_multiplier = multiplier;
        self.max_open_duration = Some(max);
        self
    }

    /// Spread each open duration by up to ± `share` of it (0.0–1.0), so
    /// breakers that opened together do not probe together. Defaults to 0.0.
    pub fn open_duration_jitter(mut self, share: f64) -> Self {
        self.open_duration_jitter = share;
        self
    }

    /// Admit at most `n` trial calls per half-open period (1–4095). Defaults
    /// to 3.
    pub fn half_open_max_calls(mut self, n: u32) -> Self {
        self.half_open_max_calls = n;
        self
    }

    /// Close when this share of the trial calls succeeds (0.0–1.0); reopen
    /// as soon as that can no longer happen. Defaults to 1.0 (every trial
    /// must succeed; one failure reopens).
    pub fn half_open_success_ratio(mut self, ratio: f64) -> Self {
        self.half_open_success_ratio = ratio;
        self
    }

    /// Reopen if half-open has not decided within `d` (trial calls that
    /// hang, or no traffic). Defaults to 60 s.
    pub fn half_open_max_duration(mut self, d: Duration) -> Self {
        self.half_open_max_duration = d;
        self
    }

    /// What to do with calls while open. Defaults to
    /// [`RejectMode::FailFast`].
    pub fn reject_mode(mut self, mode: RejectMode) -> Self {
        self.reject_mode = mode;
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<BreakerLayer, ConfigError> {
        self.validate()?;
        Ok(BreakerLayer::from_config(&self))
    }

    /// Checks the configuration, naming the first field it refuses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.window {
            WindowConfig::Count { size } => {
                validate::non_zero("window.size", size)?;
                validate::at_most("window.size", u64::from(size), 1_000_000)?;
                if self.minimum_calls > size {
                    return Err(ConfigError::new(
                        "minimum_calls",
                        format!(
                            "must not exceed the count window's size ({size}), or the rates could never trip"
                        ),
                    ));
                }
            }
            WindowConfig::Time { length, buckets } => {
                validate::non_zero_duration("window.length", length)?;
                validate::non_zero("window.buckets", buckets)?;
                validate::at_most("window.buckets", u64::from(buckets), 3600)?;
                if length.as_nanos() < u128::from(buckets) {
                    return Err(ConfigError::new(
                        "window.buckets",
                        "must not exceed the window's length in nanoseconds",
                    ));
                }
            }
        }
        validate::ratio("failure_rate_threshold", self.failure_rate_threshold)?;
        validate::ratio("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        if let Some(d) = self.slow_call_duration {
            validate::non_zero_duration("slow_call_duration", d)?;
        }
        if let Some(n) = self.consecutive_failures {
            validate::non_zero("consecutive_failures", n)?;
        }
        validate::non_zero_duration("open_duration", self.open_duration)?;
        if let Some(max) = self.max_open_duration
            && max < self.open_duration
        {
            return Err(ConfigError::new(
                "max_open_duration",
                "must not be shorter than open_duration",
            ));
        }
        if !(self.open_duration_multiplier.is_finite() && self.open_duration_multiplier >= 1.0) {
            return Err(ConfigError::new(
                "open_duration_multiplier",
                format!(
                    "must be at least 1.0, got {}",
                    self.open_duration_multiplier
                ),
            ));
        }
        validate::ratio("open_duration_jitter", self.open_duration_jitter)?;
        validate::non_zero("half_open_max_calls", self.half_open_max_calls)?;
        validate::at_most(
            "half_open_max_calls",
            u64::from(self.half_open_max_calls),
            u64::from(MAX_TRIALS),
        )?;
        validate::ratio("half_open_success_ratio", self.half_open_success_ratio)?;
        validate::non_zero_duration("half_open_max_duration", self.half_open_max_duration)?;
        Ok(())
    }

    /// Checks that `next` is valid and changes only what a running breaker
    /// can change: not the window's shape, the reject mode or the name.
    pub(crate) fn check_live_change(&self, next: &BreakerConfig) -> Result<(), ConfigError> {
        next.validate()?;
        let fixed = [
            ("window", self.window != next.window),
            ("reject_mode", self.reject_mode != next.reject_mode),
            ("name", self.name != next.name),
        ];
        match fixed.into_iter().find(|(_, changed)| *changed) {
            Some((field, _)) => Err(ConfigError::new(
                field,
                "cannot change on a running breaker; build a new layer",
            )),
            None => Ok(()),
        }
    }

    pub(crate) fn thresholds(&self) -> Thresholds {
        Thresholds {
            failure_rate: self.failure_rate_threshold,
            slow_rate: self.slow_call_rate_threshold,
            slow_nanos: self.slow_call_duration.map_or(0, nanos),
            min_calls: self.minimum_calls,
            consecutive_failures: self.consecutive_failures.unwrap_or(0),
            half_open_calls: self.half_open_max_calls,
            half_open_success_ratio: self.half_open_success_ratio,
            half_open_max_nanos: nanos(self.half_open_max_duration),
            open: OpenPolicy {
                base_nanos: nanos(self.open_duration),
                max_nanos: nanos(self.max_open_duration.unwrap_or(self.open_duration)),
                multiplier: self.open_duration_multiplier,
                jitter: self.open_duration_jitter,
            },
        }
    }

    pub(crate) fn new_window(&self) -> Window {
        match self.window {
            WindowConfig::Count { size } => Window::Count(CountWindow::new(size)),
            WindowConfig::Time { length, buckets } => {
                let bucket = length.as_nanos() / u128::from(buckets);
                Window::Time(TimeWindow::new(
                    u64::try_from(bucket).unwrap_or(u64::MAX),
                    buckets,
                ))
            }
        }
    }
}

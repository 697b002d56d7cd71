//! Slow start: a new or re-admitted endpoint's weight ramps up over a
//! window instead of taking its full share at once.

use std::time::Duration;

use rampart_core::error::ConfigError;
use serde::Deserialize;
use tokio::time::Instant;

/// The longest slow-start window accepted.
const MAX_WINDOW: Duration = Duration::from_secs(365 * 24 * 3600);

/// Slow-start configuration, Envoy's `slow_start_config`.
///
/// ```
/// use rampart_balance::health::SlowStartConfig;
/// use std::time::Duration;
///
/// let cfg: SlowStartConfig = toml::from_str(r#"
///     window = "30s"
///     aggression = 2.0
/// "#).unwrap();
/// assert_eq!(cfg, SlowStartConfig::new().window(Duration::from_secs(30)).aggression(2.0));
/// assert_eq!(toml::from_str::<SlowStartConfig>("aggression = 0.0").unwrap()
///     .validate().unwrap_err().field(), "aggression");
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlowStartConfig {
    #[serde(with = "rampart_core::duration")]
    pub(crate) window: Duration,
    pub(crate) aggression: f64,
    pub(crate) min_weight_percent: f64,
}

impl Default for SlowStartConfig {
    fn default() -> Self {
        Self {
            window: Duration::ZERO,
            aggression: 1.0,
            min_weight_percent: 10.0,
        }
    }
}

impl SlowStartConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long the ramp lasts; 0 turns slow start off. Defaults to 0.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The ramp's shape, `(elapsed / window)^(1 / aggression)`: 1.0 is
    /// linear, above 1 rises fast then flattens, below 1 starts slow
    /// (finite, > 0). Defaults to 1.0.
    pub fn aggression(mut self, aggression: f64) -> Self {
        self.aggression = aggression;
        self
    }

    /// The least factor during the ramp, in percent (`(0, 100]`), so a new
    /// endpoint gets some traffic from the start. Defaults to 10.
    pub fn min_weight_percent(mut self, percent: f64) -> Self {
        self.min_weight_percent = percent;
        self
    }

    /// Checks the configuration, naming the first field it refuses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = self.aggression;
        if !(a.is_finite() && a > 0.0) {
            return Err(ConfigError::new(
                "aggression",
                format!("must be a finite number > 0, got {a}"),
            ));
        }
        if self.window > MAX_WINDOW {
            return Err(ConfigError::new("window", "must be at most one year"));
        }
        let m = self.min_weight_percent;
        if !(m > 0.0 && m <= 100.0) {
            return Err(ConfigError::new(
                "min_weight_percent",
                format!("must be within (0.0, 100.0], got {m}"),
            ));
        }
        Ok(())
    }

    /// Checks the configuration and builds the ramp.
    pub fn build(&self) -> Result<SlowStart, ConfigError> {
        self.validate()?;
        Ok(SlowStart {
            window: self.window,
            exponent: 1.0 / self.aggression,
            min_factor: self.min_weight_percent / 100.0,
        })
    }
}

/// The slow-start ramp (built by [`SlowStartConfig::build`]): the factor,
/// in `(0, 1]`, by which to scale the weight of an endpoint that entered
/// rotation (was added or re-admitted) at `since`.
///
/// `factor = max(min_weight_percent / 100, (elapsed / window)^(1 / aggression))`
/// while `elapsed < window`, and 1.0 from the end of the window on (or
/// always, with a window of 0). Monotone in `now`.
///
/// ```
/// use rampart_balance::health::SlowStartConfig;
/// use std::time::Duration;
/// use tokio::time::Instant;
///
/// let ramp = SlowStartConfig::new().window(Duration::from_secs(10)).build().unwrap();
/// let t0 = Instant::now();
/// assert_eq!(ramp.factor(t0, t0), 0.1); // the floor
/// assert_eq!(ramp.factor(t0, t0 + Duration::from_secs(5)), 0.5);
/// assert_eq!(ramp.factor(t0, t0 + Duration::from_secs(10)), 1.0);
/// assert!(ramp.is_ramping(t0, t0 + Duration::from_secs(9)));
/// assert_eq!(ramp.ends_at(t0), t0 + Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    window: Duration,
    exponent: f64,
    min_factor: f64,
}

impl Default for SlowStart {
    /// Off: every factor is 1.0.
    fn default() -> Self {
        Self {
            window: Duration::ZERO,
            exponent: 1.0,
            min_factor: 0.1,
        }
    }
}

impl SlowStart {
    /// The weight factor at `now` of an endpoint in rotation since `since`
    /// (a `since` after `now` counts as just started).
    pub fn factor(&self, since: Instant, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= self.window {
            return 1.0;
        }
        let progress = elapsed.as_secs_f64() / self.window.as_secs_f64();
        progress.powf(self.exponent).clamp(self.min_factor, 1.0)
    }

    /// `true` while `now` is inside the ramp's window (the factor may be
    /// below 1.0; it is 1.0 from [`ends_at`](Self::ends_at) on).
    pub fn is_ramping(&self, since: Instant, now: Instant) -> bool {
        now.saturating_duration_since(since) < self.window
    }

    /// When the ramp of an endpoint in rotation since `since` ends (the
    /// factor is 1.0 from then on), so the balancer knows when to stop
    /// refreshing its weight.
    pub fn ends_at(&self, since: Instant) -> Instant {
        since + self.window
    }

    /// The window (0 = off).
    pub fn window(&self) -> Duration {
        self.window
    }
}

//! Hedging configuration: the delay, how many hedges, the budget; TOML.

use std::fmt;
use std::time::Duration;

use rampart_core::error::{ConfigError, validate};
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, IntoDeserializer, MapAccess, Visitor};

use crate::budget::BudgetConfig;
use crate::hedge::layer::HedgeLayer;

/// The most hedges a layer may send per request.
pub const MAX_HEDGES: u32 = 3;

/// When a hedge is sent: how long the first attempt may go unanswered.
///
/// In TOML, a fixed delay is a duration and a percentile a table:
///
/// ```
/// use std::time::Duration;
/// use rampart_retry::{HedgeConfig, HedgeDelay};
///
/// let fixed: HedgeConfig = toml::from_str(r#"delay = "40ms""#).unwrap();
/// assert_eq!(fixed.build().unwrap().current_delay(), Some(Duration::from_millis(40)));
///
/// let tracked: HedgeConfig = toml::from_str(
///     r#"delay = { percentile = 0.9, min_samples = 50, window = "5s" }"#,
/// ).unwrap();
/// assert_eq!(
///     tracked,
///     HedgeConfig::new().delay(HedgeDelay::Percentile {
///         percentile: 0.9,
///         min_samples: 50,
///         window: Duration::from_secs(5),
///     }),
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeDelay {
    /// Always this long (> 0).
    Fixed(Duration),
    /// The `percentile` of the latencies of recent calls through the
    /// layer, tracked online.
    ///
    /// Latencies are counted per `window`; the delay is the percentile of
    /// the last complete window, rounded up to the end of its histogram
    /// bucket (at most 6.25 % above). A window that counted fewer than
    /// `min_samples` calls gives no delay, and no hedge is sent until a
    /// window has: the layer hedges only once it knows what slow means.
    /// The first window after the layer is built therefore never hedges.
    Percentile {
        /// The percentile, within (0, 1): 0.95 hedges the slowest 5 %.
        percentile: f64,
        /// Calls a window must count before its percentile is used (≥ 1).
        min_samples: u64,
        /// How long latencies are counted before the estimate is renewed
        /// (> 0).
        window: Duration,
    },
}

const DEFAULT_MIN_SAMPLES: u64 = 100;
const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

impl HedgeDelay {
    /// [`HedgeDelay::Percentile`] with 100 samples per 10 s window.
    pub const fn percentile(percentile: f64) -> Self {
        HedgeDelay::Percentile {
            percentile,
            min_samples: DEFAULT_MIN_SAMPLES,
            window: DEFAULT_WINDOW,
        }
    }
}

impl Default for HedgeDelay {
    /// The 95th percentile, 100 samples per 10 s window.
    fn default() -> Self {
        Self::percentile(0.95)
    }
}

/// The configuration of a hedging layer.
///
/// Every setter says its default. `build()` checks the whole and names the
/// first field it refuses. The same fields load from TOML, unknown keys
/// refused:
///
/// ```
/// use rampart_retry::HedgeConfig;
///
/// let cfg: HedgeConfig = toml::from_str(r#"
///     name = "search"
///     delay = { percentile = 0.95, min_samples = 200, window = "30s" }
///     max_hedges = 1
///     budget = { ratio = 0.1, min_per_second = 5, window = "10s" }
/// "#).unwrap();
/// let layer = cfg.build().unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HedgeConfig {
    pub(crate) name: String,
    pub(crate) delay: HedgeDelay,
    pub(crate) max_hedges: u32,
    pub(crate) budget: BudgetConfig,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            delay: HedgeDelay::default(),
            max_hedges: 1,
            budget: BudgetConfig::default(),
        }
    }
}

impl HedgeConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// A name for logs and metric labels. Defaults to none.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long the first attempt may go unanswered before a hedge is
    /// sent. Defaults to the 95th percentile of recent latencies
    /// ([`HedgeDelay::default`]).
    pub fn delay(mut self, delay: HedgeDelay) -> Self {
        self.delay = delay;
        self
    }

    /// Hedges per request at most (1–3), each sent one `delay` after the
    /// previous attempt while none has answered. Defaults to 1.
    pub fn max_hedges(mut self, n: u32) -> Self {
        self.max_hedges = n;
        self
    }

    /// Draw hedges from a budget private to this layer (to share one with
    /// a retry layer, see [`HedgeLayer::with_budget`]). Hedging always has
    /// a budget. Defaults to 20 % of first calls plus 10 per second over
    /// 10 s.
    pub fn budget(mut self, budget: BudgetConfig) -> Self {
        self.budget = budget;
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<HedgeLayer, ConfigError> {
        self.validate()?;
        Ok(HedgeLayer::from_config(&self))
    }

    /// Checks the configuration, naming the first field it refuses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.delay {
            HedgeDelay::Fixed(d) => {
                validate::non_zero_duration("delay", d)?;
            }
            HedgeDelay::Percentile {
                percentile,
                min_samples,
                window,
            } => {
                if !(percentile > 0.0 && percentile < 1.0) {
                    return Err(ConfigError::new(
                        "delay.percentile",
                        format!("must be within (0.0, 1.0), got {percentile}"),
                    ));
                }
                validate::non_zero("delay.min_samples", min_samples)?;
                validate::non_zero_duration("delay.window", window)?;
            }
        }
        validate::non_zero("max_hedges", self.max_hedges)?;
        validate::at_most(
            "max_hedges",
            u64::from(self.max_hedges),
            u64::from(MAX_HEDGES),
        )?;
        self.budget.check(true)
    }
}

// === impl Deserialize for HedgeDelay ===

/// The table form of [`HedgeDelay::Percentile`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tracked {
    percentile: f64,
    #[serde(default = "default_min_samples")]
    min_samples: u64,
    #[serde(default = "default_window", with = "rampart_core::duration")]
    window: Duration,
}

fn default_min_samples() -> u64 {
    DEFAULT_MIN_SAMPLES
}

fn default_window() -> Duration {
    DEFAULT_WINDOW
}

struct DelayVisitor;

impl<'de> Visitor<'de> for DelayVisitor {
    type Value = HedgeDelay;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"50ms\", or a table { percentile, min_samples, window }")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<HedgeDelay, E> {
        rampart_core::duration::deserialize(v.into_deserializer()).map(HedgeDelay::Fixed)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<HedgeDelay, E> {
        rampart_core::duration::deserialize(v.into_deserializer()).map(HedgeDelay::Fixed)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<HedgeDelay, E> {
        rampart_core::duration::deserialize(v.into_deserializer()).map(HedgeDelay::Fixed)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<HedgeDelay, A::Error> {
        let t = Tracked::deserialize(MapAccessDeserializer::new(map))?;
        Ok(HedgeDelay::Percentile {
            percentile: t.percentile,
            min_samples: t.min_samples,
            window: t.window,
        })
    }
}

impl<'de> Deserialize<'de> for HedgeDelay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DelayVisitor)
    }
}

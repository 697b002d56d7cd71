//! Choosing a strategy by configuration (the mesh's TOML).

use rampart_core::error::ConfigError;
use serde::Deserialize;

use super::{
    LeastRequest, LeastRequestConfig, Load, Maglev, MaglevConfig, PowerOfTwoChoices,
    PowerOfTwoChoicesConfig, RingHash, RingHashConfig, RoundRobin, SmoothWeightedRoundRobin,
    Strategy, WeightedRandom,
};

/// Which [`Strategy`] a balancer uses, with its settings: `kind` names it,
/// the other keys are that strategy's settings (unknown keys refused).
///
/// ```
/// use rampart_balance::strategy::StrategyConfig;
///
/// let cfg: StrategyConfig = toml::from_str(r#"
///     kind = "ring_hash"
///     minimum_ring_size = 2048
///     hash_balance_factor = 1.25
/// "#).unwrap();
/// assert_eq!(cfg.kind(), "ring_hash");
/// let strategy = cfg.build().unwrap();
/// # let _ = strategy;
///
/// let cfg: StrategyConfig = toml::from_str(r#"kind = "power_of_two_choices""#).unwrap();
/// assert_eq!(cfg, StrategyConfig::default()); // p2c on peak EWMA
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StrategyConfig {
    /// [`RoundRobin`] (no settings; written `RoundRobin {}` in Rust so that
    /// stray keys in the TOML are refused too).
    RoundRobin {},
    /// [`SmoothWeightedRoundRobin`] (no settings).
    SmoothWeightedRoundRobin {},
    /// [`WeightedRandom`] (no settings).
    WeightedRandom {},
    /// [`LeastRequest`].
    LeastRequest(LeastRequestConfig),
    /// [`PowerOfTwoChoices`].
    PowerOfTwoChoices(PowerOfTwoChoicesConfig),
    /// [`RingHash`].
    RingHash(RingHashConfig),
    /// [`Maglev`].
    Maglev(MaglevConfig),
}

impl Default for StrategyConfig {
    /// Power of two choices on peak EWMA: it follows latency and load
    /// without settings, like linkerd's and tower's balancers.
    fn default() -> Self {
        StrategyConfig::PowerOfTwoChoices(PowerOfTwoChoicesConfig::new().load(Load::PeakEwma))
    }
}

impl StrategyConfig {
    /// The `kind` as written in configuration (for logs and metric labels).
    pub fn kind(&self) -> &'static str {
        match self {
            StrategyConfig::RoundRobin {} => "round_robin",
            StrategyConfig::SmoothWeightedRoundRobin {} => "smooth_weighted_round_robin",
            StrategyConfig::WeightedRandom {} => "weighted_random",
            StrategyConfig::LeastRequest(_) => "least_request",
            StrategyConfig::PowerOfTwoChoices(_) => "power_of_two_choices",
            StrategyConfig::RingHash(_) => "ring_hash",
            StrategyConfig::Maglev(_) => "maglev",
        }
    }

    /// Whether the strategy routes by [`Pick::hash`](super::Pick::hash), so
    /// the balancer should extract a key from each request.
    pub fn uses_hash(&self) -> bool {
        matches!(
            self,
            StrategyConfig::RingHash(_) | StrategyConfig::Maglev(_)
        )
    }

    /// Checks the settings, naming the first field refused.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            StrategyConfig::RoundRobin {}
            | StrategyConfig::SmoothWeightedRoundRobin {}
            | StrategyConfig::WeightedRandom {} => Ok(()),
            StrategyConfig::LeastRequest(c) => c.validate(),
            StrategyConfig::PowerOfTwoChoices(c) => c.validate(),
            StrategyConfig::RingHash(c) => c.validate(),
            StrategyConfig::Maglev(c) => c.validate(),
        }
    }

    /// A fresh strategy, or the first field refused.
    pub fn build(&self) -> Result<Box<dyn Strategy>, ConfigError> {
        Ok(match self {
            StrategyConfig::RoundRobin {} => Box::new(RoundRobin::new()),
            StrategyConfig::SmoothWeightedRoundRobin {} => {
                Box::new(SmoothWeightedRoundRobin::new())
            }
            StrategyConfig::WeightedRandom {} => Box::new(WeightedRandom::new()),
            StrategyConfig::LeastRequest(c) => Box::<LeastRequest>::new(c.build()?),
            StrategyConfig::PowerOfTwoChoices(c) => Box::<PowerOfTwoChoices>::new(c.build()?),
            StrategyConfig::RingHash(c) => Box::<RingHash>::new(c.build()?),
            StrategyConfig::Maglev(c) => Box::<Maglev>::new(c.build()?),
        })
    }
}

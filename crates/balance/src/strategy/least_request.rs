//! Least request, as Envoy does it.

use rampart_core::error::{ConfigError, validate};
use serde::Deserialize;

use super::shared::{SlotIds, balance_weight, endpoint, pending, random_below};
use super::smooth_weighted::smooth_step;
use super::{Endpoint, Pick, Strategy};

/// Settings of [`LeastRequest`] (Envoy's names).
///
/// ```
/// use rampart_balance::strategy::LeastRequestConfig;
///
/// let cfg: LeastRequestConfig = toml::from_str("choice_count = 3\nactive_request_bias = 0.5").unwrap();
/// let strategy = cfg.build().unwrap();
/// # let _ = strategy;
/// assert!(LeastRequestConfig::new().choice_count(1).build().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeastRequestConfig {
    pub(crate) choice_count: u32,
    pub(crate) active_request_bias: f64,
}

impl Default for LeastRequestConfig {
    fn default() -> Self {
        Self {
            choice_count: 2,
            active_request_bias: 1.0,
        }
    }
}

impl LeastRequestConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// With equal weights, sample this many routable endpoints at random
    /// (with replacement, as Envoy) and take the one with the fewest
    /// pending requests (2–100). Defaults to 2.
    pub fn choice_count(mut self, n: u32) -> Self {
        self.choice_count = n;
        self
    }

    /// With unequal weights, balance by `weight / (pending + 1)^bias`
    /// (a finite number ≥ 0; 0 ignores load and balances by weight only,
    /// larger values shun busy endpoints harder). Defaults to 1.0.
    pub fn active_request_bias(mut self, bias: f64) -> Self {
        self.active_request_bias = bias;
        self
    }

    /// Checks every field, naming the first one refused.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.choice_count < 2 {
            return Err(ConfigError::new(
                "choice_count",
                format!("must be at least 2, got {}", self.choice_count),
            ));
        }
        validate::at_most("choice_count", self.choice_count.into(), 100)?;
        if !(self.active_request_bias.is_finite() && self.active_request_bias >= 0.0) {
            return Err(ConfigError::new(
                "active_request_bias",
                format!(
                    "must be a finite number of at least 0.0, got {}",
                    self.active_request_bias
                ),
            ));
        }
        Ok(())
    }

    /// The strategy, or the first field refused.
    pub fn build(&self) -> Result<LeastRequest, ConfigError> {
        self.validate()?;
        Ok(LeastRequest {
            config: self.clone(),
            ..LeastRequest::default()
        })
    }
}

/// Sends each request to an endpoint with few pending requests, the way
/// Envoy's `LEAST_REQUEST` does.
///
/// - When every endpoint of the table has the same effective weight:
///   sample [`choice_count`](LeastRequestConfig::choice_count) routable
///   endpoints at random from [`Pick::rng`] (with replacement) and take
///   the one with the fewest pending requests (the first sampled among
///   equals). Two choices already avoid the herd that a global minimum
///   causes when many balancers see the same stale counts.
/// - Otherwise: a smooth weighted round robin (as in
///   [`SmoothWeightedRoundRobin`](super::SmoothWeightedRoundRobin)) over
///   the load-adjusted weights `effective_weight / (pending + 1)^bias`,
///   recomputed on every pick (Envoy uses an earliest-deadline schedule
///   over the same weights). A heavier endpoint gets proportionally more,
///   a busy one less, and there are no bursts.
///
/// The weighted mode's per-slot state survives updates for endpoints that
/// stay in their slot.
#[derive(Debug)]
pub struct LeastRequest {
    config: LeastRequestConfig,
    ids: SlotIds,
    current: Vec<f64>,
    equal_weights: bool,
}

impl LeastRequest {
    /// Envoy's defaults: 2 choices, bias 1.0.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Default for LeastRequest {
    fn default() -> Self {
        Self {
            config: LeastRequestConfig::default(),
            ids: SlotIds::default(),
            current: Vec::new(),
            equal_weights: true,
        }
    }
}

impl Strategy for LeastRequest {
    fn update(&mut self, endpoints: &[Option<Endpoint>]) {
        self.current.resize(endpoints.len(), 0.0);
        let current = &mut self.current;
        self.ids.sync(endpoints, |slot| current[slot] = 0.0);
        let mut weights = endpoints.iter().flatten().map(balance_weight);
        self.equal_weights = match weights.next() {
            Some(first) => weights.all(|w| w == first),
            None => true,
        };
    }

    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize> {
        let routable = pick.routable;
        if routable.is_empty() {
            return None;
        }
        if self.equal_weights {
            let mut best = routable[random_below(pick.rng, routable.len())];
            for _ in 1..self.config.choice_count {
                let other = routable[random_below(pick.rng, routable.len())];
                if pending(pick, other) < pending(pick, best) {
                    best = other;
                }
            }
            return Some(best);
        }
        let bias = self.config.active_request_bias;
        smooth_step(&mut self.current, routable, |slot| {
            let Some(e) = endpoint(pick, slot) else {
                return 1.0;
            };
            let load = f64::from(pick.pending(slot)) + 1.0;
            let scale = if bias == 1.0 {
                load
            } else if bias == 0.0 {
                1.0
            } else {
                load.powf(bias)
            };
            balance_weight(e) / scale
        })
    }
}

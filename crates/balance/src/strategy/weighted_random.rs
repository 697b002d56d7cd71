//! Weighted random.

use super::shared::{balance_weight, endpoint, random_routable};
use super::{Endpoint, Pick, Strategy};

/// Picks a routable endpoint at random with probability proportional to
/// its effective weight, drawing from [`Pick::rng`] (one draw per pick).
///
/// Stateless: nothing to keep across updates, and balancers sharing no
/// state still spread load by weight. Over `N` picks an endpoint with
/// weight share `p` is picked `N·p ± a few √(N·p(1−p))` times; use
/// [`SmoothWeightedRoundRobin`](super::SmoothWeightedRoundRobin) for exact
/// shares.
#[derive(Debug, Default, Clone)]
pub struct WeightedRandom;

impl WeightedRandom {
    /// The strategy (it has no settings).
    pub fn new() -> Self {
        Self
    }
}

impl Strategy for WeightedRandom {
    fn update(&mut self, _endpoints: &[Option<Endpoint>]) {}

    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize> {
        let weight = |slot| endpoint(pick, slot).map_or(1.0, balance_weight);
        let total: f64 = pick.routable.iter().map(|&s| weight(s)).sum();
        if !(total.is_finite() && total > 0.0) {
            return random_routable(pick);
        }
        // `unit()` is in (0, 1]: the slot whose cumulative weight first
        // reaches the target.
        let target = pick.rng.unit() * total;
        let mut acc = 0.0;
        for &slot in pick.routable {
            acc += weight(slot);
            if acc >= target {
                return Some(slot);
            }
        }
        // Rounding left the target a hair above the sum: the last slot.
        pick.routable.last().copied()
    }
}

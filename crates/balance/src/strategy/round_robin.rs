//! Round robin: every routable slot in turn.

use super::shared::random_below;
use super::{Endpoint, Pick, Strategy};

/// Picks the routable slots in turn, in slot order, ignoring weights.
///
/// The rotation is exact: over any `k × n` picks with the same `n`
/// routable slots each slot is picked exactly `k` times. It continues
/// after the last picked slot when the routable set changes (an endpoint
/// ejected, added or back), so a change does not restart the rotation at
/// slot 0 and overload the low slots. The first pick starts at a random
/// routable slot (from [`Pick::rng`]), so that balancers started together
/// do not move in step (Envoy does the same).
///
/// ```
/// use rampart_balance::strategy::{Endpoint, Pick, RoundRobin, Strategy};
/// use rampart_core::random::SharedRng;
///
/// let ep = |id: &str| Some(Endpoint::new(id, 1));
/// let table = [ep("a"), ep("b"), ep("c")];
/// let rng = SharedRng::new(1);
/// let mut rr = RoundRobin::new();
/// rr.update(&table);
/// let pick = Pick::new(&table, &[0, 1, 2], &rng);
/// let first = rr.pick(&pick).unwrap();
/// assert_eq!(rr.pick(&pick), Some((first + 1) % 3));
/// assert_eq!(rr.pick(&pick), Some((first + 2) % 3));
/// ```
#[derive(Debug, Default, Clone)]
pub struct RoundRobin {
    last: Option<usize>,
}

impl RoundRobin {
    /// A rotation that starts at a random routable slot.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Strategy for RoundRobin {
    fn update(&mut self, _endpoints: &[Option<Endpoint>]) {}

    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize> {
        let routable = pick.routable;
        if routable.is_empty() {
            return None;
        }
        let next = match self.last {
            // The first routable slot after the last pick, wrapping round.
            Some(last) => match routable.partition_point(|&s| s <= last) {
                i if i == routable.len() => routable[0],
                i => routable[i],
            },
            None => routable[random_below(pick.rng, routable.len())],
        };
        self.last = Some(next);
        Some(next)
    }
}

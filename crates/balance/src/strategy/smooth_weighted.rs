//! Smooth weighted round robin (nginx's algorithm).

use super::shared::{SlotIds, balance_weight, endpoint};
use super::{Endpoint, Pick, Strategy};

/// nginx's smooth weighted round robin over effective weights.
///
/// Each pick adds every routable endpoint's effective weight to its
/// `current`, picks the largest `current` (the lowest slot among equals)
/// and takes the routable total off the winner. With weights 5, 1, 1 the
/// picks are `a a b a c a a`, repeating: exact per weight cycle (each
/// endpoint picked `weight` times per `Σ weight` picks while the set is
/// unchanged) and without bursts to the heaviest endpoint, unlike a plain
/// weighted rotation (`a a a a a b c`).
///
/// Only routable endpoints take part; an endpoint that is not routable
/// keeps its `current` until it is back, as in nginx. An endpoint that
/// stays in its slot across [`update`](Strategy::update)s keeps its
/// `current`; a slot that gets a new endpoint starts at 0. Slow start's
/// effective weight is used as is, so a ramping endpoint gets its share
/// of each cycle, smoothly.
///
/// ```
/// use rampart_balance::strategy::{Endpoint, Pick, SmoothWeightedRoundRobin, Strategy};
/// use rampart_core::random::SharedRng;
///
/// let ep = |id, w: u32| Some(Endpoint::new(id, w));
/// let table = [ep("a", 5), ep("b", 1), ep("c", 1)];
/// let rng = SharedRng::new(1);
/// let mut swrr = SmoothWeightedRoundRobin::new();
/// swrr.update(&table);
/// let pick = Pick::new(&table, &[0, 1, 2], &rng);
/// let seq: Vec<_> = (0..7).map(|_| swrr.pick(&pick).unwrap()).collect();
/// assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
/// ```
#[derive(Debug, Default)]
pub struct SmoothWeightedRoundRobin {
    ids: SlotIds,
    current: Vec<f64>,
}

impl SmoothWeightedRoundRobin {
    /// A strategy with every `current` at 0.
    pub fn new() -> Self {
        Self::default()
    }
}

/// One smooth weighted round-robin step over `routable` with the weights
/// `weight(slot)`, `current` indexed by slot (grown as needed). Shared
/// with [`LeastRequest`](super::LeastRequest)'s weighted mode.
pub(crate) fn smooth_step(
    current: &mut Vec<f64>,
    routable: &[usize],
    mut weight: impl FnMut(usize) -> f64,
) -> Option<usize> {
    let top = *routable.last()?;
    if current.len() <= top {
        current.resize(top + 1, 0.0);
    }
    let mut total = 0.0;
    let mut best: Option<(usize, f64)> = None;
    for &slot in routable {
        let w = weight(slot);
        total += w;
        let c = &mut current[slot];
        *c += w;
        if best.is_none_or(|(_, b)| *c > b) {
            best = Some((slot, *c));
        }
    }
    let (slot, _) = best?;
    current[slot] -= total;
    Some(slot)
}

impl Strategy for SmoothWeightedRoundRobin {
    fn update(&mut self, endpoints: &[Option<Endpoint>]) {
        self.current.resize(endpoints.len(), 0.0);
        let current = &mut self.current;
        self.ids.sync(endpoints, |slot| current[slot] = 0.0);
    }

    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize> {
        smooth_step(&mut self.current, pick.routable, |slot| {
            endpoint(pick, slot).map_or(1.0, balance_weight)
        })
    }
}

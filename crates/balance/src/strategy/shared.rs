//! Small pieces every strategy uses: random draws, routable checks, safe
//! weights and per-slot identity tracking.

use std::sync::Arc;

use rampart_core::random::SharedRng;

use super::{Endpoint, Pick};

/// Uniform in `0..n` (`n > 0`), by multiply-shift (Lemire): no division,
/// bias below 2⁻³² for any table a balancer holds.
#[inline]
pub(crate) fn random_below(rng: &SharedRng, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// A uniformly random routable slot; `None` when none is routable.
#[inline]
pub(crate) fn random_routable(pick: &Pick<'_>) -> Option<usize> {
    match pick.routable.len() {
        0 => None,
        n => Some(pick.routable[random_below(pick.rng, n)]),
    }
}

/// Whether `slot` may take the request (`routable` is ascending).
#[inline]
pub(crate) fn is_routable(routable: &[usize], slot: usize) -> bool {
    routable.binary_search(&slot).is_ok()
}

/// The endpoint in `slot`, if the slot is in the table and occupied.
#[inline]
pub(crate) fn endpoint<'p>(pick: &'p Pick<'_>, slot: usize) -> Option<&'p Endpoint> {
    pick.endpoints.get(slot).and_then(Option::as_ref)
}

/// Requests pending on `slot` (0 for a slot the table does not hold).
#[inline]
pub(crate) fn pending(pick: &Pick<'_>, slot: usize) -> u32 {
    if endpoint(pick, slot).is_some() {
        pick.pending(slot)
    } else {
        0
    }
}

/// The weight to balance by: the effective weight when it is a positive
/// number, else the configured weight (at least 1). Never 0 or NaN, so no
/// strategy divides by zero whatever the table says.
#[inline]
pub(crate) fn balance_weight(e: &Endpoint) -> f64 {
    if e.effective_weight.is_finite() && e.effective_weight > 0.0 {
        e.effective_weight
    } else {
        f64::from(e.weight.max(1))
    }
}

/// The configured weight, at least 1 (what the hash strategies build by).
#[inline]
pub(crate) fn fixed_weight(e: &Endpoint) -> u64 {
    u64::from(e.weight.max(1))
}

/// Which endpoint (id and configured weight) each slot held at the last
/// [`Strategy::update`](super::Strategy::update), so a strategy can keep
/// per-slot state for an endpoint that stays and reset it for a slot that
/// now holds another.
#[derive(Debug, Default)]
pub(crate) struct SlotIds {
    slots: Vec<Option<(Arc<str>, u32)>>,
}

impl SlotIds {
    /// Records `endpoints`; calls `fresh(slot)` for every slot that now
    /// holds a different endpoint (or none) than before. Returns whether
    /// any slot's id or configured weight changed.
    pub(crate) fn sync(
        &mut self,
        endpoints: &[Option<Endpoint>],
        mut fresh: impl FnMut(usize),
    ) -> bool {
        let mut changed = self.slots.len() != endpoints.len();
        self.slots.resize(endpoints.len(), None);
        for (slot, (known, now)) in self.slots.iter_mut().zip(endpoints).enumerate() {
            let same_id = match (known.as_ref(), now) {
                (Some((id, _)), Some(e)) => *id == e.id,
                (None, None) => true,
                _ => false,
            };
            let same_weight = match (known.as_ref(), now) {
                (Some((_, w)), Some(e)) => *w == e.weight,
                _ => same_id,
            };
            if !same_id {
                fresh(slot);
            }
            if !(same_id && same_weight) {
                changed = true;
                *known = now.as_ref().map(|e| (e.id.clone(), e.weight));
            }
        }
        changed
    }
}

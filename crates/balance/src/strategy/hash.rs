//! What the hash strategies share: key mixing, the bounded-load capacity,
//! the clockwise walk to a routable slot and the `hash_balance_factor`
//! check.

use rampart_core::error::ConfigError;
use rampart_core::random::splitmix64;

use super::Pick;
use super::shared::{is_routable, pending, random_routable};

/// The request's key, spread over 64 bits (SplitMix64's finaliser, a
/// bijection), so that small or sequential keys land all over the ring or
/// table instead of in one arc.
#[inline]
pub(crate) fn mix(hash: u64) -> u64 {
    splitmix64(hash)
}

/// Checks a `hash_balance_factor` (`None`, or a finite c ≥ 1.0).
pub(crate) fn validate_balance_factor(factor: Option<f64>) -> Result<(), ConfigError> {
    match factor {
        Some(c) if !(c.is_finite() && c >= 1.0) => Err(ConfigError::new(
            "hash_balance_factor",
            format!("must be a finite number of at least 1.0, got {c}"),
        )),
        _ => Ok(()),
    }
}

/// The bounded-load capacity for this pick ("consistent hashing with
/// bounded loads", Mirrokni, Thorup and Zadimoghaddam): with `m` requests
/// in flight counting this one over `n` routable endpoints, an endpoint
/// may take the request only while its pending count is below
/// `ceil(c × m / n)`. One such endpoint always exists, since the least
/// loaded holds at most `(m − 1) / n`.
pub(crate) fn capacity(factor: f64, pick: &Pick<'_>) -> u64 {
    let total: u64 = pick
        .routable
        .iter()
        .map(|&s| u64::from(pending(pick, s)))
        .sum();
    let mean = (total + 1) as f64 / pick.routable.len().max(1) as f64;
    (factor * mean).ceil() as u64
}

/// Walks `slots` clockwise from `start` (wrapping once round) to the first
/// routable slot, and with a capacity, to the first routable slot below
/// it. Falls back to the first routable slot passed when all are at
/// capacity, and to a random routable slot when the table holds none of
/// them (an empty table, or endpoints the table has no entries for).
pub(crate) fn walk(
    slots: &[u32],
    start: usize,
    pick: &Pick<'_>,
    capacity: Option<u64>,
) -> Option<usize> {
    if pick.routable.is_empty() {
        return None;
    }
    let start = if start < slots.len() { start } else { 0 };
    let mut first = None;
    for &slot in slots[start..].iter().chain(&slots[..start]) {
        let slot = slot as usize;
        if first == Some(slot) || !is_routable(pick.routable, slot) {
            continue;
        }
        match capacity {
            Some(cap) if u64::from(pending(pick, slot)) >= cap => {
                first.get_or_insert(slot);
            }
            _ => return Some(slot),
        }
    }
    first.or_else(|| random_routable(pick))
}

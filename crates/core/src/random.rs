//! Cheap, seeded, repeatable random numbers for jitter and sampling (not
//! for secrets): SplitMix64, shared by the layers that draw per call.
//!
//! ```
//! use rampart_core::random::SharedRng;
//!
//! let a = SharedRng::new(7);
//! let b = SharedRng::new(7);
//! assert_eq!(a.next_u64(), b.next_u64()); // seeded: repeatable
//! let u = a.unit();
//! assert!(u > 0.0 && u <= 1.0);
//! ```

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

/// SplitMix64's increment (the golden ratio in 64 bits).
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// A seed that differs per call and per process (std's random hasher
/// keys), for layers configured without a seed, so that processes sharing
/// a configuration do not jitter or shed in step.
pub fn fresh_seed() -> u64 {
    RandomState::new().hash_one(0u8)
}

/// SplitMix64's output for the state `state + GOLDEN`: spreads nearby
/// inputs (seeds, counters) over all 64 bits.
#[inline]
pub fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A SplitMix64 generator shared by every caller: one atomic add per draw,
/// no lock, so a seeded layer draws the same sequence in the same order.
#[derive(Debug)]
pub struct SharedRng(AtomicU64);

impl SharedRng {
    /// A generator started from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&self) -> u64 {
        splitmix64(self.0.fetch_add(GOLDEN, Ordering::Relaxed))
    }

    /// Uniform in `(0.0, 1.0]`.
    #[inline]
    pub fn unit(&self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_sequence() {
        // SplitMix64 from seed 0 (Vigna's reference values).
        let rng = SharedRng::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn unit_stays_in_its_interval() {
        let rng = SharedRng::new(42);
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!(u > 0.0 && u <= 1.0);
        }
    }
}

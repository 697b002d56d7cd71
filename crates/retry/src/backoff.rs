//! Backoff between tries: the delays, and the small seeded RNG for jitter.

use std::time::Duration;

use rampart_core::clock::nanos;
use serde::Deserialize;

/// How long to wait before each retry.
///
/// `n` below is the number of the retry (1 for the first retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Backoff {
    /// Always `delay`.
    Constant {
        /// The delay (> 0).
        #[serde(with = "rampart_core::duration")]
        delay: Duration,
    },
    /// `min(cap, base × 2ⁿ⁻¹)`: base, 2 base, 4 base, ...
    Exponential {
        /// The first delay (> 0).
        #[serde(with = "rampart_core::duration")]
        base: Duration,
        /// The longest delay (≥ base).
        #[serde(with = "rampart_core::duration")]
        cap: Duration,
    },
    /// "Full jitter": uniform in `[0, min(cap, base × 2ⁿ⁻¹)]`.
    FullJitter {
        /// The first ceiling (> 0).
        #[serde(with = "rampart_core::duration")]
        base: Duration,
        /// The highest ceiling (≥ base).
        #[serde(with = "rampart_core::duration")]
        cap: Duration,
    },
    /// "Decorrelated jitter": uniform in `[base, 3 × previous]`, at most
    /// `cap`, the previous delay starting at `base`. Always within
    /// `[base, cap]`.
    DecorrelatedJitter {
        /// The shortest delay (> 0).
        #[serde(with = "rampart_core::duration")]
        base: Duration,
        /// The longest delay (≥ base).
        #[serde(with = "rampart_core::duration")]
        cap: Duration,
    },
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::FullJitter {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// `(base, cap)`; a constant delay is both.
    pub(crate) fn bounds(&self) -> (Duration, Duration) {
        match *self {
            Backoff::Constant { delay } => (delay, delay),
            Backoff::Exponential { base, cap }
            | Backoff::FullJitter { base, cap }
            | Backoff::DecorrelatedJitter { base, cap } => (base, cap),
        }
    }

    /// The delay before retry `n` (≥ 1), given the previous delay (for
    /// decorrelated jitter; pass `None` before the first retry).
    pub fn delay(&self, n: u32, previous: Option<Duration>, rng: &mut Rng) -> Duration {
        let (base, cap) = self.bounds();
        let (base, cap) = (nanos(base), nanos(cap));
        let exp = || {
            let shift = n.saturating_sub(1).min(63);
            base.saturating_mul(1u64 << shift).min(cap)
        };
        let d = match self {
            Backoff::Constant { .. } => base,
            Backoff::Exponential { .. } => exp(),
            Backoff::FullJitter { .. } => rng.between(0, exp()),
            Backoff::DecorrelatedJitter { .. } => {
                let prev = previous.map_or(base, nanos).max(base);
                rng.between(base, prev.saturating_mul(3)).min(cap)
            }
        };
        Duration::from_nanos(d)
    }
}

/// A xorshift64* generator: cheap, seeded, repeatable. Not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        // splitmix64 spreads nearby seeds apart; xorshift needs a non-zero state.
        Self(rampart_core::random::splitmix64(seed) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[lo, hi]` (`lo` when `hi < lo`).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = u128::from(hi - lo) + 1;
        lo + ((u128::from(self.next_u64()) * span) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::{Backoff, Duration, Rng};
    use proptest::prelude::{any, prop_assert, proptest};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn constant_and_exponential_sequences() {
        let mut rng = Rng::new(1);
        let c = Backoff::Constant { delay: 7 * MS };
        let seq: Vec<_> = (1..=4).map(|n| c.delay(n, None, &mut rng)).collect();
        assert_eq!(seq, [7 * MS; 4]);
        let e = Backoff::Exponential {
            base: 100 * MS,
            cap: 1000 * MS,
        };
        let seq: Vec<_> = (1..=6).map(|n| e.delay(n, None, &mut rng)).collect();
        assert_eq!(
            seq,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        // no overflow however many retries
        assert_eq!(e.delay(u32::MAX, None, &mut rng), 1000 * MS);
    }

    #[test]
    fn full_jitter_is_seeded_and_bounded() {
        let b = Backoff::FullJitter {
            base: 100 * MS,
            cap: 1000 * MS,
        };
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (1..=8)
                .map(|n| b.delay(n, None, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42), "same seed, same delays");
        assert_ne!(run(42), run(43));
        for seed in 0..200 {
            for (i, d) in run(seed).into_iter().enumerate() {
                let ceiling = (100 * MS * (1 << i)).min(1000 * MS);
                assert!(d <= ceiling, "retry {}: {d:?} > {ceiling:?}", i + 1);
            }
        }
    }

    proptest! {
        #[test]
        fn decorrelated_jitter_stays_within_base_and_cap(
            seed in any::<u64>(),
            base_ms in 1u64..1_000,
            extra_ms in 0u64..10_000,
            retries in 1u32..50,
        ) {
            let base = Duration::from_millis(base_ms);
            let cap = base + Duration::from_millis(extra_ms);
            let b = Backoff::DecorrelatedJitter { base, cap };
            let mut rng = Rng::new(seed);
            let mut prev = None;
            for n in 1..=retries {
                let d = b.delay(n, prev, &mut rng);
                prop_assert!(d >= base && d <= cap, "{:?} outside [{:?}, {:?}]", d, base, cap);
                prev = Some(d);
            }
        }

        #[test]
        fn between_is_inclusive_and_bounded(seed in any::<u64>(), lo in 0u64..1_000, span in 0u64..1_000) {
            let mut rng = Rng::new(seed);
            let v = rng.between(lo, lo + span);
            prop_assert!(v >= lo && v <= lo + span);
        }
    }
}

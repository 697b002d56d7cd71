//! The retry budget: retries may add at most a share on top of first tries.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_core::clock::Origin;
use rampart_core::error::{ConfigError, validate};
use serde::Deserialize;

/// The configuration of a [`RetryBudget`] (Envoy and Finagle style).
///
/// Over a sliding `window`, retries may number at most `ratio` × first
/// tries, plus `min_per_second` × the window's length in seconds (a floor
/// so a quiet service can still retry). Loads from TOML, unknown keys
/// refused:
///
/// ```
/// use rampart_retry::BudgetConfig;
///
/// let budget = toml::from_str::<BudgetConfig>(r#"
///     ratio = 0.1
///     min_per_second = 5
///     window = "10s"
/// "#).unwrap().build().unwrap();
/// # let _ = budget;
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    pub(crate) ratio: f64,
    pub(crate) min_per_second: u32,
    #[serde(with = "rampart_core::duration")]
    pub(crate) window: Duration,
    pub(crate) buckets: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
            buckets: 10,
        }
    }
}

impl BudgetConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Retries may add at most `ratio` × first tries (0.0–10.0, i.e. 0 to
    /// 1000 %). Defaults to 0.2.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Allow this many retries per second of window whatever the ratio.
    /// Defaults to 10.
    pub fn min_per_second(mut self, n: u32) -> Self {
        self.min_per_second = n;
        self
    }

    /// Count tries over the last `window`, in `buckets` buckets (1–3600;
    /// the window slides a bucket at a time). Defaults to 10 s in 10
    /// buckets.
    pub fn window(mut self, window: Duration, buckets: u32) -> Self {
        self.window = window;
        self.buckets = buckets;
        self
    }

    /// Checks the configuration, naming the first field it refuses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(false)
    }

    pub(crate) fn check(&self, nested: bool) -> Result<(), ConfigError> {
        let name =
            |plain: &'static str, prefixed: &'static str| if nested { prefixed } else { plain };
        if !(0.0..=10.0).contains(&self.ratio) {
            return Err(ConfigError::new(
                name("ratio", "budget.ratio"),
                format!("must be within 0.0..=10.0, got {}", self.ratio),
            ));
        }
        validate::non_zero_duration(name("window", "budget.window"), self.window)?;
        let buckets = name("buckets", "budget.buckets");
        validate::non_zero(buckets, self.buckets)?;
        validate::at_most(buckets, u64::from(self.buckets), 3600)?;
        if self.window.as_nanos() < u128::from(self.buckets) {
            return Err(ConfigError::new(
                buckets,
                "must not exceed the window's length in nanoseconds",
            ));
        }
        Ok(())
    }

    /// Checks the configuration and builds the budget.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        self.validate()?;
        Ok(RetryBudget::from_config(&self))
    }
}

/// A retry budget, shared by every layer holding a clone of it.
///
/// Every first try deposits, every retry withdraws; a retry the budget
/// cannot pay for is not made, and the caller gets the last real outcome.
/// Clones share one account, so several retry layers (for example one per
/// route to the same upstream) can draw on one budget.
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    origin: Origin,
    ratio: f64,
    reserve: f64,
    ring: Mutex<Ring>,
}

/// What a budget holds at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSnapshot {
    /// First tries counted in the window.
    pub first_tries: u64,
    /// Retries counted in the window.
    pub retries: u64,
    /// Retries the budget allows at this moment (its allowance minus the
    /// retries already withdrawn in the window).
    pub available: u64,
}

impl RetryBudget {
    /// A configuration to build a budget from, with production defaults.
    pub fn builder() -> BudgetConfig {
        BudgetConfig::default()
    }

    pub(crate) fn from_config(c: &BudgetConfig) -> Self {
        let bucket = c.window.as_nanos() / u128::from(c.buckets.max(1));
        Self {
            inner: Arc::new(Inner {
                origin: Origin::new(),
                ratio: c.ratio,
                reserve: f64::from(c.min_per_second) * c.window.as_secs_f64(),
                ring: Mutex::new(Ring::new(
                    u64::try_from(bucket).unwrap_or(u64::MAX).max(1),
                    c.buckets.max(1),
                )),
            }),
        }
    }

    fn now(&self) -> u64 {
        self.inner.origin.nanos()
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        match self.inner.ring.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Records a first try.
    pub fn deposit(&self) {
        let now = self.now();
        self.ring().deposit(now);
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_withdraw(&self) -> bool {
        let now = self.now();
        self.ring()
            .try_withdraw(now, self.inner.ratio, self.inner.reserve)
    }

    /// The counts in the window now.
    pub fn snapshot(&self) -> BudgetSnapshot {
        let now = self.now();
        let mut ring = self.ring();
        ring.advance(now);
        let allowance = ring.allowance(self.inner.ratio, self.inner.reserve);
        BudgetSnapshot {
            first_tries: ring.deposits,
            retries: ring.withdrawals,
            available: allowance.saturating_sub(ring.withdrawals),
        }
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &self.inner.ratio)
            .field("reserve", &self.inner.reserve)
            .finish()
    }
}

// === impl Ring ===

/// Deposits and withdrawals of the last `len` buckets, with running totals.
/// Time is nanoseconds since the budget was made.
#[derive(Debug)]
pub(crate) struct Ring {
    bucket_nanos: u64,
    slots: Box<[(u64, u64)]>,
    /// Absolute index (`now / bucket_nanos`) of the newest bucket.
    head: u64,
    deposits: u64,
    withdrawals: u64,
}

impl Ring {
    pub(crate) fn new(bucket_nanos: u64, buckets: u32) -> Self {
        Self {
            bucket_nanos,
            slots: vec![(0, 0); buckets as usize].into_boxed_slice(),
            head: 0,
            deposits: 0,
            withdrawals: 0,
        }
    }

    fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Moves the head to `now`'s bucket, emptying the buckets that left
    /// the window (at most one pass over the ring).
    fn advance(&mut self, now: u64) -> usize {
        let idx = now / self.bucket_nanos;
        if idx > self.head {
            let first = (self.head + 1).max(idx.saturating_sub(self.len() - 1));
            for j in first..=idx {
                let slot = (j % self.len()) as usize;
                let (d, w) = std::mem::take(&mut self.slots[slot]);
                self.deposits -= d;
                self.withdrawals -= w;
            }
            self.head = idx;
        }
        (self.head % self.len()) as usize
    }

    /// Retries the window pays for in all.
    fn allowance(&self, ratio: f64, reserve: f64) -> u64 {
        let a = ratio * self.deposits as f64 + reserve;
        if a >= u64::MAX as f64 {
            u64::MAX
        } else {
            a as u64
        }
    }

    pub(crate) fn deposit(&mut self, now: u64) {
        let slot = self.advance(now);
        self.slots[slot].0 += 1;
        self.deposits += 1;
    }

    pub(crate) fn try_withdraw(&mut self, now: u64, ratio: f64, reserve: f64) -> bool {
        let slot = self.advance(now);
        if self.withdrawals >= self.allowance(ratio, reserve) {
            return false;
        }
        self.slots[slot].1 += 1;
        self.withdrawals += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy)]
    enum Op {
        FirstTry,
        Retry,
    }

    proptest! {
        /// For any interleaving of first tries, retries and time gaps, the
        /// retries counted in the window never exceed what the window pays
        /// for, and a retry is refused only when paying for it would
        /// overspend.
        #[test]
        fn never_overspent(
            ratio in 0.0f64..=10.0,
            min_per_second in 0u32..3,
            buckets in 1u32..8,
            ops in prop::collection::vec(
                (prop_oneof![Just(Op::FirstTry), Just(Op::Retry)], prop_oneof![Just(0u64), 0u64..400_000_000]),
                0..300,
            ),
        ) {
            let window = Duration::from_secs(1);
            let bucket = 1_000_000_000 / u64::from(buckets);
            let reserve = f64::from(min_per_second) * window.as_secs_f64();
            let mut ring = Ring::new(bucket, buckets);
            let mut now = 0u64;
            let mut log: Vec<(u64, Op)> = Vec::new();
            for (op, gap) in ops {
                now += gap;
                let head = now / bucket;
                let live = |log: &[(u64, Op)], want: fn(&Op) -> bool| {
                    log.iter()
                        .filter(|(t, o)| t / bucket + u64::from(buckets) > head && want(o))
                        .count() as u64
                };
                match op {
                    Op::FirstTry => {
                        ring.deposit(now);
                        log.push((now, op));
                    }
                    Op::Retry => {
                        let deposits = live(&log, |o| matches!(o, Op::FirstTry));
                        let before = live(&log, |o| matches!(o, Op::Retry));
                        let allowed = (before + 1) as f64 <= ratio * deposits as f64 + reserve;
                        let paid = ring.try_withdraw(now, ratio, reserve);
                        prop_assert_eq!(paid, allowed);
                        if paid {
                            log.push((now, op));
                            let after = live(&log, |o| matches!(o, Op::Retry));
                            prop_assert!(after as f64 <= ratio * deposits as f64 + reserve);
                        }
                    }
                }
                prop_assert_eq!(ring.deposits, live(&log, |o| matches!(o, Op::FirstTry)));
                prop_assert_eq!(ring.withdrawals, live(&log, |o| matches!(o, Op::Retry)));
            }
        }
    }

    #[test]
    fn refuses_bad_config() {
        let err = BudgetConfig::new().ratio(10.5).build().unwrap_err();
        assert_eq!(err.field(), "ratio");
        assert!(BudgetConfig::new().ratio(f64::NAN).build().is_err());
        assert!(BudgetConfig::new().ratio(10.0).build().is_ok());
        let err = BudgetConfig::new()
            .window(Duration::ZERO, 10)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "window");
        let err = BudgetConfig::new()
            .window(Duration::from_secs(1), 0)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "buckets");
    }
}

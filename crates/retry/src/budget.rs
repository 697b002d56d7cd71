//! The retry budget: retries may add at most a share on top of first tries.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
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

    /// Count tries over the last `window`, in `buckets` buckets (1–3600,
    /// each at least 1 ms long; the window slides a bucket at a time). Defaults to 10 s in 10
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
        if self.window.as_millis() < u128::from(self.buckets) {
            return Err(ConfigError::new(
                buckets,
                format!(
                    "buckets must be at least 1 ms long: at most {} for a window of {:?}",
                    self.window.as_millis(),
                    self.window
                ),
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
/// A retry layer's call that may make only one try (`max_attempts` 1, or a
/// [`RetryOverride`](crate::RetryOverride) of 1) neither deposits nor
/// withdraws.
/// Clones share one account, so several retry layers (for example one per
/// route to the same upstream) can draw on one budget.
///
/// A deposit (one per call, on the hot path) is one clock read and one
/// compare-and-swap on its time bucket, with no lock; a withdrawal (one per
/// retry, rare) sums the buckets and takes a short lock, so that two
/// retries racing for the last unit cannot both be paid.
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Account>,
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
        Self {
            inner: Arc::new(Account::new(c)),
        }
    }

    fn now(&self) -> u64 {
        self.inner.origin.nanos()
    }

    /// Records a first try.
    pub fn deposit(&self) {
        self.inner.deposit(self.now());
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_withdraw(&self) -> bool {
        self.inner.try_withdraw(self.now())
    }

    /// The counts in the window now.
    pub fn snapshot(&self) -> BudgetSnapshot {
        self.inner.snapshot(self.now())
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

// === impl Account ===

/// Bits of a deposit slot holding its count; the rest hold its bucket.
const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
/// Bucket numbers are kept modulo 2^40: with buckets of at least 1 ms (see
/// [`BudgetConfig::validate`]) a slot would have to sit untouched for 34
/// years to be mistaken for a live one.
const EPOCH_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;

/// The account behind a [`RetryBudget`]. Time is nanoseconds since it was
/// made, passed in, so that tests can drive it.
pub(crate) struct Account {
    origin: Origin,
    ratio: f64,
    reserve: f64,
    bucket_nanos: u64,
    /// One slot per bucket of the window: the bucket's number (modulo
    /// 2^40) in the high bits, its first tries (saturating at 2^24 - 1,
    /// which only under-credits) in the low ones.
    deposits: Box<[AtomicU64]>,
    /// Retries per bucket; the lock also serialises withdrawals.
    withdrawals: Mutex<Ring>,
}

impl Account {
    pub(crate) fn new(c: &BudgetConfig) -> Self {
        let buckets = c.buckets.max(1);
        let bucket = c.window.as_nanos() / u128::from(buckets);
        Self {
            origin: Origin::new(),
            ratio: c.ratio,
            reserve: f64::from(c.min_per_second) * c.window.as_secs_f64(),
            bucket_nanos: u64::try_from(bucket).unwrap_or(u64::MAX).max(1),
            deposits: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            withdrawals: Mutex::new(Ring::new(buckets)),
        }
    }

    fn len(&self) -> u64 {
        self.deposits.len() as u64
    }

    pub(crate) fn deposit(&self, now: u64) {
        let idx = now / self.bucket_nanos;
        let epoch = idx & EPOCH_MASK;
        let slot = &self.deposits[(idx % self.len()) as usize];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let age = epoch.wrapping_sub(cur >> COUNT_BITS) & EPOCH_MASK;
            let next = if age == 0 || age > EPOCH_MASK / 2 {
                // This bucket, or a newer one a later clock reading already
                // started (this thread was descheduled): count it there.
                if cur & COUNT_MAX == COUNT_MAX {
                    return;
                }
                cur + 1
            } else {
                // A bucket that has left the window: start this one.
                (epoch << COUNT_BITS) | 1
            };
            match slot.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// First tries in the window ending with bucket `idx`.
    fn deposited(&self, idx: u64) -> u64 {
        let epoch = idx & EPOCH_MASK;
        self.deposits
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .filter(|v| (epoch.wrapping_sub(v >> COUNT_BITS) & EPOCH_MASK) < self.len())
            .map(|v| v & COUNT_MAX)
            .sum()
    }

    /// Retries the window pays for in all.
    fn allowance(&self, deposited: u64) -> u64 {
        let a = self.ratio * deposited as f64 + self.reserve;
        if a >= u64::MAX as f64 {
            u64::MAX
        } else {
            a as u64
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.withdrawals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn try_withdraw(&self, now: u64) -> bool {
        let idx = now / self.bucket_nanos;
        let mut ring = self.ring();
        ring.advance(idx);
        if ring.total >= self.allowance(self.deposited(idx)) {
            return false;
        }
        ring.add(idx);
        true
    }

    pub(crate) fn snapshot(&self, now: u64) -> BudgetSnapshot {
        let idx = now / self.bucket_nanos;
        let mut ring = self.ring();
        ring.advance(idx);
        let first_tries = self.deposited(idx);
        BudgetSnapshot {
            first_tries,
            retries: ring.total,
            available: self.allowance(first_tries).saturating_sub(ring.total),
        }
    }
}

// === impl Ring ===

/// Retries in the last `len` buckets, with a running total.
#[derive(Debug)]
struct Ring {
    slots: Box<[u64]>,
    /// Number of the newest bucket.
    head: u64,
    total: u64,
}

impl Ring {
    fn new(buckets: u32) -> Self {
        Self {
            slots: vec![0; buckets as usize].into_boxed_slice(),
            head: 0,
            total: 0,
        }
    }

    fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Moves the head to bucket `idx`, emptying the buckets that left the
    /// window (at most one pass over the ring).
    fn advance(&mut self, idx: u64) {
        if idx > self.head {
            let first = (self.head + 1).max(idx.saturating_sub(self.len() - 1));
            for j in first..=idx {
                let slot = (j % self.len()) as usize;
                self.total -= std::mem::take(&mut self.slots[slot]);
            }
            self.head = idx;
        }
    }

    fn add(&mut self, idx: u64) {
        // A withdrawal timed before the head (a stale clock reading) is
        // counted in the head's bucket: it lives a little longer, which
        // can only make the budget stricter.
        let slot = (idx.max(self.head) % self.len()) as usize;
        self.slots[slot] += 1;
        self.total += 1;
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

    fn account(ratio: f64, min_per_second: u32, buckets: u32) -> Account {
        Account::new(
            &BudgetConfig::new()
                .ratio(ratio)
                .min_per_second(min_per_second)
                .window(Duration::from_secs(1), buckets),
        )
    }

    proptest! {
        /// For any interleaving of first tries, retries and time gaps, the
        /// retries counted in the window never exceed what the window pays
        /// for, a retry is refused only when paying for it would overspend,
        /// and the counts match a naive recount of the window.
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
            let bucket = 1_000_000_000 / u64::from(buckets);
            let reserve = f64::from(min_per_second);
            let budget = account(ratio, min_per_second, buckets);
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
                        budget.deposit(now);
                        log.push((now, op));
                    }
                    Op::Retry => {
                        let deposits = live(&log, |o| matches!(o, Op::FirstTry));
                        let before = live(&log, |o| matches!(o, Op::Retry));
                        let allowed = (before + 1) as f64 <= ratio * deposits as f64 + reserve;
                        let paid = budget.try_withdraw(now);
                        prop_assert_eq!(paid, allowed);
                        if paid {
                            log.push((now, op));
                            let after = live(&log, |o| matches!(o, Op::Retry));
                            prop_assert!(after as f64 <= ratio * deposits as f64 + reserve);
                        }
                    }
                }
                let snap = budget.snapshot(now);
                prop_assert_eq!(snap.first_tries, live(&log, |o| matches!(o, Op::FirstTry)));
                prop_assert_eq!(snap.retries, live(&log, |o| matches!(o, Op::Retry)));
            }
        }
    }

    /// Threads racing to deposit and withdraw never get more retries paid
    /// than the deposits allow, and no deposit is lost.
    #[test]
    fn racing_threads_never_overspend() {
        let budget = Arc::new(account(0.5, 0, 1));
        let paid = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        budget.deposit(0);
                        if budget.try_withdraw(0) {
                            paid.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let snap = budget.snapshot(0);
        assert_eq!(snap.first_tries, 40_000);
        assert_eq!(snap.retries, paid.load(Ordering::Relaxed));
        assert!(snap.retries <= 20_000);
        // Each thread withdraws after its deposit, so at least every
        // other deposit pays for a retry once the ratio allows it.
        assert!(snap.retries >= 19_000, "{snap:?}");
    }

    #[test]
    fn a_full_bucket_saturates_instead_of_wrapping() {
        let budget = account(1.0, 0, 1);
        let slot = &budget.deposits[0];
        slot.store(COUNT_MAX, Ordering::Relaxed);
        budget.deposit(0);
        assert_eq!(budget.snapshot(0).first_tries, COUNT_MAX);
        // the next window starts afresh
        budget.deposit(1_000_000_000);
        assert_eq!(budget.snapshot(1_000_000_000).first_tries, 1);
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
        let err = BudgetConfig::new()
            .window(Duration::from_millis(5), 6)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "buckets", "buckets under 1 ms");
        assert!(
            BudgetConfig::new()
                .window(Duration::from_millis(5), 5)
                .build()
                .is_ok()
        );
    }
}

//! Sliding windows of call outcomes: O(1) per call, bounded memory, lock-free.
//!
//! Both windows keep running totals next to their slots. Every change to a
//! slot is an atomic swap or add whose exact delta is applied to the totals,
//! so the totals always equal the sum of the slots, even when calls race.

use crate::sync::{AtomicU8, AtomicU32, AtomicU64, Ordering};

/// Totals over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls recorded.
    pub calls: u64,
    /// Of which failed.
    pub failures: u64,
    /// Of which were slow.
    pub slow: u64,
}

/// A count-based or time-based window.
#[derive(Debug)]
pub enum Window {
    /// The last N calls.
    Count(CountWindow),
    /// The calls of the last T, in buckets.
    Time(TimeWindow),
}

impl Window {
    /// Records one outcome at `now` (nanoseconds on the breaker's clock) and
    /// returns the totals after it.
    #[inline]
    pub fn record(&self, failure: bool, slow: bool, now: u64) -> Counts {
        match self {
            Window::Count(w) => w.record(failure, slow),
            Window::Time(w) => w.record(failure, slow, now),
        }
    }

    /// The totals at `now`.
    pub fn counts(&self, now: u64) -> Counts {
        match self {
            Window::Count(w) => w.counts(),
            Window::Time(w) => w.counts(now),
        }
    }

    /// Forgets every outcome.
    pub fn reset(&self) {
        match self {
            Window::Count(w) => w.reset(),
            Window::Time(w) => w.reset(),
        }
    }

    /// `true` when recording needs the clock.
    pub fn needs_clock(&self) -> bool {
        matches!(self, Window::Time(_))
    }
}

impl Counts {
    /// Reads running totals. Totals change by exact deltas, but two racing
    /// writers may apply theirs in either order, so a reader can catch one
    /// transiently below zero (wrapped) or a part above the whole: clamp.
    fn read(calls: &AtomicU64, failures: &AtomicU64, slow: &AtomicU64) -> Self {
        let get = |a: &AtomicU64| (a.load(Ordering::Relaxed) as i64).max(0) as u64;
        let calls = get(calls);
        Counts {
            calls,
            failures: get(failures).min(calls),
            slow: get(slow).min(calls),
        }
    }

    /// Failures per call, 0.0 when empty.
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls)
    }

    /// Slow calls per call, 0.0 when empty.
    pub fn slow_rate(&self) -> f64 {
        ratio(self.slow, self.calls)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn sub(a: &AtomicU64, v: u64) {
    if v != 0 {
        a.fetch_sub(v, Ordering::Relaxed);
    }
}

fn add(a: &AtomicU64, v: u64) {
    if v != 0 {
        a.fetch_add(v, Ordering::Relaxed);
    }
}

// === impl CountWindow ===

/// The write index, alone on its cache lines (128 bytes: a line and its
/// prefetched neighbour). Next to the totals it cost ~13 ns per call here
/// (measured with `benches/examples`), apart it costs ~1 ns.
#[derive(Debug)]
#[repr(align(128))]
struct Padded(AtomicU32);

const OCCUPIED: u8 = 0b001;
const FAILED: u8 = 0b010;
const SLOW: u8 = 0b100;

/// The last `size` outcomes, one byte each, written round-robin.
#[derive(Debug)]
pub struct CountWindow {
    slots: Box<[AtomicU8]>,
    next: Padded,
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

impl CountWindow {
    /// A window of the last `size` calls (`size` ≥ 1).
    pub fn new(size: u32) -> Self {
        let size = size.max(1);
        Self {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            next: Padded(AtomicU32::new(0)),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            slow: AtomicU64::new(0),
        }
    }

    #[inline]
    fn record(&self, failure: bool, slow: bool) -> Counts {
        // The write index advances by a plain load and store, not a
        // read-modify-write: two racing writers may pick the same slot, and
        // then one outcome replaces the other (the window briefly holds
        // one call fewer). The totals still equal the slots, because slots
        // change only by swaps whose exact delta is applied. Exact when
        // calls do not race; a proptest checks it against a recount.
        let len = self.slots.len() as u32;
        let i = self.next.0.load(Ordering::Relaxed);
        let i = if i < len { i } else { 0 };
        self.next
            .0
            .store(if i + 1 >= len { 0 } else { i + 1 }, Ordering::Relaxed);
        let new = OCCUPIED | if failure { FAILED } else { 0 } | if slow { SLOW } else { 0 };
        let slot = &self.slots[i as usize];
        // Steady state rewrites a slot with the value it holds: a load is
        // enough. (Another writer can own the same slot only if the whole
        // window wrapped meanwhile; the totals stay equal to the slots.)
        if slot.load(Ordering::Relaxed) == new {
            return self.counts();
        }
        let old = slot.swap(new, Ordering::Relaxed);
        if old != new {
            self.apply(new, true);
            self.apply(old, false);
        }
        self.counts()
    }

    fn apply(&self, bits: u8, plus: bool) {
        let f = if plus { add } else { sub };
        f(&self.calls, u64::from(bits & OCCUPIED != 0));
        f(&self.failures, u64::from(bits & FAILED != 0));
        f(&self.slow, u64::from(bits & SLOW != 0));
    }

    fn counts(&self) -> Counts {
        Counts::read(&self.calls, &self.failures, &self.slow)
    }

    fn reset(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(0, Ordering::Relaxed);
            self.apply(old, false);
        }
    }
}

// === impl TimeWindow ===

#[derive(Debug)]
struct Bucket {
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

/// The outcomes of the last `buckets × bucket_nanos`, in a fixed ring of
/// buckets. The newest bucket is the one `now` falls in; when time moves
/// on, the buckets that fell out of the window are emptied (at most one
/// pass over the ring, however long the pause was).
#[derive(Debug)]
pub struct TimeWindow {
    bucket_nanos: u64,
    buckets: Box<[Bucket]>,
    /// Absolute index (`now / bucket_nanos`) of the newest bucket.
    head: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

impl TimeWindow {
    /// A window of `buckets` buckets of `bucket_nanos` each (both ≥ 1).
    pub fn new(bucket_nanos: u64, buckets: u32) -> Self {
        Self {
            bucket_nanos: bucket_nanos.max(1),
            buckets: (0..buckets.max(1))
                .map(|_| Bucket {
                    calls: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    slow: AtomicU64::new(0),
                })
                .collect(),
            head: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            slow: AtomicU64::new(0),
        }
    }

    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    fn record(&self, failure: bool, slow: bool, now: u64) -> Counts {
        let idx = now / self.bucket_nanos;
        let head = self.advance(idx);
        // An outcome older than the whole window is dropped.
        if idx + self.len() > head {
            // Totals first, bucket second: a concurrent clear of this bucket
            // then subtracts at most what the totals already hold.
            let b = &self.buckets[(idx % self.len()) as usize];
            self.calls.fetch_add(1, Ordering::Relaxed);
            b.calls.fetch_add(1, Ordering::Relaxed);
            if failure {
                self.failures.fetch_add(1, Ordering::Relaxed);
                b.failures.fetch_add(1, Ordering::Relaxed);
            }
            if slow {
                self.slow.fetch_add(1, Ordering::Relaxed);
                b.slow.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.totals()
    }

    /// Moves the head to `idx`, emptying the buckets that left the window.
    /// Returns the head after the call.
    fn advance(&self, idx: u64) -> u64 {
        let mut head = self.head.load(Ordering::Acquire);
        while idx > head {
            match self
                .head
                .compare_exchange_weak(head, idx, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // We own the buckets (head, idx]: empty them. A ring
                    // holds `len` buckets, so at most `len` need emptying.
                    let first = (head + 1).max(idx.saturating_sub(self.len() - 1));
                    for j in first..=idx {
                        self.clear((j % self.len()) as usize);
                    }
                    return idx;
                }
                Err(actual) => head = actual,
            }
        }
        head
    }

    fn clear(&self, slot: usize) {
        let b = &self.buckets[slot];
        sub(&self.calls, b.calls.swap(0, Ordering::Relaxed));
        sub(&self.failures, b.failures.swap(0, Ordering::Relaxed));
        sub(&self.slow, b.slow.swap(0, Ordering::Relaxed));
    }

    fn totals(&self) -> Counts {
        Counts::read(&self.calls, &self.failures, &self.slow)
    }

    fn counts(&self, now: u64) -> Counts {
        self.advance(now / self.bucket_nanos);
        self.totals()
    }

    fn reset(&self) {
        for slot in 0..self.buckets.len() {
            self.clear(slot);
        }
    }
}

#[cfg(all(test, not(rampart_loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy)]
    struct Call {
        failure: bool,
        slow: bool,
        /// Nanoseconds since the previous call.
        gap: u64,
    }

    fn call() -> impl Strategy<Value = Call> {
        (
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just(0u64), 0u64..3_000, 0u64..40_000],
        )
            .prop_map(|(failure, slow, gap)| Call { failure, slow, gap })
    }

    fn naive(calls: &[Call]) -> Counts {
        Counts {
            calls: calls.len() as u64,
            failures: calls.iter().filter(|c| c.failure).count() as u64,
            slow: calls.iter().filter(|c| c.slow).count() as u64,
        }
    }

    proptest! {
        /// The count window's totals equal a recount of the last `size` calls.
        #[test]
        fn count_window_matches_naive(size in 1u32..40, calls in prop::collection::vec(call(), 0..300)) {
            let w = Window::Count(CountWindow::new(size));
            for (i, c) in calls.iter().enumerate() {
                let got = w.record(c.failure, c.slow, 0);
                let start = (i + 1).saturating_sub(size as usize);
                prop_assert_eq!(got, naive(&calls[start..=i]));
            }
            w.reset();
            prop_assert_eq!(w.counts(0), Counts::default());
        }

        /// The time window's totals equal a recount of the calls whose
        /// bucket lies within the last `buckets` buckets.
        #[test]
        fn time_window_matches_naive(
            bucket in 1u64..5_000,
            buckets in 1u32..12,
            calls in prop::collection::vec(call(), 0..300),
            probe_gap in 0u64..100_000,
        ) {
            let w = Window::Time(TimeWindow::new(bucket, buckets));
            let mut now = 0u64;
            let mut seen: Vec<(u64, Call)> = Vec::new();
            let live = |seen: &[(u64, Call)], now: u64| {
                let head = now / bucket;
                let kept: Vec<Call> = seen
                    .iter()
                    .filter(|(t, _)| t / bucket + u64::from(buckets) > head)
                    .map(|(_, c)| *c)
                    .collect();
                naive(&kept)
            };
            for c in &calls {
                now += c.gap;
                seen.push((now, *c));
                let got = w.record(c.failure, c.slow, now);
                prop_assert_eq!(got, live(&seen, now));
            }
            // Reading later, with no calls in between, expires old buckets.
            now += probe_gap;
            prop_assert_eq!(w.counts(now), live(&seen, now));
            w.reset();
            prop_assert_eq!(w.counts(now), Counts::default());
        }
    }

    #[test]
    fn time_window_survives_a_long_pause_in_one_pass() {
        let w = TimeWindow::new(1_000, 10);
        for t in 0..10 {
            w.record(true, false, t * 1_000);
        }
        assert_eq!(w.counts(9_999).calls, 10);
        // An hour later everything is gone, and the head jumped at once.
        assert_eq!(w.counts(3_600_000_000_000).calls, 0);
        assert_eq!(w.head.load(Ordering::Relaxed), 3_600_000_000);
    }

    #[test]
    fn rates() {
        let c = Counts {
            calls: 4,
            failures: 1,
            slow: 2,
        };
        assert_eq!(c.failure_rate(), 0.25);
        assert_eq!(c.slow_rate(), 0.5);
        assert_eq!(Counts::default().failure_rate(), 0.0);
    }
}

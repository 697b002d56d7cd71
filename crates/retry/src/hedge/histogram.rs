//! Online latency percentiles: log-scale buckets of atomic counters over
//! rotating windows.
//!
//! Latencies are counted in microseconds, in buckets 16 to an octave (a
//! bucket is at most 1/16 = 6.25 % of its lower edge wide), from 1 µs to
//! 2³⁶ µs (about 19 hours; longer latencies land in the last bucket).
//! Recording is one `fetch_add`; nothing allocates after construction.
//!
//! Time is cut into windows of a fixed length, counted from the
//! histogram's origin on tokio's clock. Three sets of counters take turns:
//! the current window's, the last complete window's, and the next
//! window's, cleared in advance. When the first call of a new window
//! arrives, it moves the epoch forward, clears the set the window after
//! will use and computes the percentile of the window just completed;
//! every call until the next window reads that one cached value. The
//! estimate therefore follows a change in latency within two windows and
//! forgets an idle period: after a window without enough samples there is
//! no estimate.
//!
//! Under concurrency the counts are approximate at the edges: a sample a
//! thread records while another rotates past an idle gap may be cleared,
//! and a late sample may land in a window already summarised. Neither
//! matters for a percentile.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rampart_core::clock::{Origin, nanos};

/// Sub-buckets per octave, as a power of two.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// The largest octave counted: values from 2^`TOP_OCTAVE` µs share the
/// last bucket.
const TOP_OCTAVE: u32 = 36;
/// Buckets per window: values below `SUB` exactly, then `SUB` per octave.
pub(crate) const BUCKETS: usize = ((TOP_OCTAVE - SUB_BITS + 1) as usize) * SUB as usize;

/// No estimate (stored in place of a bucket end, which is never zero).
const NONE: u64 = 0;

/// The bucket a latency of `micros` falls in.
pub(crate) fn bucket(micros: u64) -> usize {
    if micros < SUB {
        return micros as usize;
    }
    let octave = u64::BITS - 1 - micros.leading_zeros();
    if octave >= TOP_OCTAVE {
        return BUCKETS - 1;
    }
    let shift = octave - SUB_BITS;
    let group = (shift + 1) as usize;
    let sub = ((micros >> shift) - SUB) as usize;
    group * SUB as usize + sub
}

/// The first microsecond past bucket `i`: every latency counted in it is
/// shorter than this.
pub(crate) fn bucket_end(i: usize) -> u64 {
    let (group, sub) = (i as u64 / SUB, i as u64 % SUB);
    if group == 0 {
        return sub + 1;
    }
    let shift = group - 1;
    ((SUB + sub) << shift) + (1 << shift)
}

/// The end of the bucket holding the `percentile` (nearest rank) of the
/// latencies counted in `counts`, when there are at least `min_samples`.
pub(crate) fn percentile(counts: &[AtomicU64], percentile: f64, min_samples: u64) -> Option<u64> {
    let total: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    if total == 0 || total < min_samples {
        return None;
    }
    // Nearest rank: the smallest sample with at least `percentile` of all
    // samples at or below it.
    let rank = ((percentile * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c.load(Ordering::Relaxed);
        if seen >= rank {
            return Some(bucket_end(i));
        }
    }
    // Only reached if counts grew between the two passes.
    Some(bucket_end(BUCKETS - 1))
}

/// The latencies of recent calls and their percentile; shared by every
/// service of one hedge layer.
#[derive(Debug)]
pub(crate) struct LatencyHistogram {
    origin: Origin,
    window: u64,
    percentile: f64,
    min_samples: u64,
    /// The window the cached estimate is for.
    epoch: AtomicU64,
    /// The percentile of the window before `epoch`, as a bucket end in
    /// microseconds, or `NONE`.
    estimate: AtomicU64,
    /// Window `w` counts into `slots[w % 3]`.
    slots: [Box<[AtomicU64]>; 3],
}

impl LatencyHistogram {
    pub(crate) fn new(percentile: f64, min_samples: u64, window: Duration) -> Self {
        let counts = || (0..BUCKETS).map(|_| AtomicU64::new(0)).collect();
        Self {
            origin: Origin::new(),
            window: nanos(window).max(1),
            percentile,
            min_samples,
            epoch: AtomicU64::new(0),
            estimate: AtomicU64::new(NONE),
            slots: [counts(), counts(), counts()],
        }
    }

    /// Nanoseconds since the histogram was made, on tokio's clock.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.origin.nanos()
    }

    /// Counts a call that took `latency`, ending at `now`.
    pub(crate) fn record(&self, now: u64, latency: Duration) {
        let window = now / self.window;
        self.advance(window);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.slots[(window % 3) as usize][bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The percentile of the last complete window, if it counted enough
    /// calls.
    pub(crate) fn estimate(&self, now: u64) -> Option<Duration> {
        self.advance(now / self.window);
        match self.estimate.load(Ordering::Acquire) {
            NONE => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    /// Moves the epoch to `window`, once per window: clears the counters
    /// that no longer belong to the last two windows and caches the
    /// estimate of the window before `window`.
    fn advance(&self, window: u64) {
        let epoch = self.epoch.load(Ordering::Acquire);
        if epoch >= window
            || self
                .epoch
                .compare_exchange(epoch, window, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        // This thread won the move from `epoch` to `window`. The set for
        // `window + 1` held an old window: clear it. The sets for `window`
        // and `window - 1` were cleared in advance when their turn came
        // next, unless whole windows passed without a call.
        let clear = |w: u64| {
            for c in self.slots[(w % 3) as usize].iter() {
                c.store(0, Ordering::Relaxed);
            }
        };
        clear(window + 1);
        if epoch + 1 < window {
            clear(window);
        }
        if epoch + 2 < window {
            clear(window - 1);
        }
        let prev = &self.slots[((window - 1) % 3) as usize];
        let estimate = percentile(prev, self.percentile, self.min_samples).unwrap_or(NONE);
        self.estimate.store(estimate, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn counts_of(samples: &[u64]) -> Vec<AtomicU64> {
        let counts: Vec<AtomicU64> = (0..BUCKETS).map(|_| AtomicU64::new(0)).collect();
        for &s in samples {
            counts[bucket(s)].fetch_add(1, Ordering::Relaxed);
        }
        counts
    }

    #[test]
    fn buckets_tile_the_range() {
        // Every value falls in the bucket whose range holds it, and the
        // buckets follow each other without gaps.
        let mut start = 0;
        for i in 0..BUCKETS {
            let end = bucket_end(i);
            assert!(end > start, "bucket {i} is empty");
            assert_eq!(bucket(start), i);
            assert_eq!(bucket(end - 1), i);
            start = end;
        }
        assert_eq!(start, 1 << TOP_OCTAVE);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket_end(0), 1, "an estimate is never zero");
    }

    #[test]
    fn bucket_width_is_at_most_a_sixteenth() {
        for i in SUB as usize..BUCKETS {
            let lo = bucket_end(i - 1);
            let width = bucket_end(i) - lo;
            assert!(width * SUB <= lo, "bucket {i}: width {width} from {lo}");
        }
    }

    #[test]
    fn no_estimate_below_min_samples() {
        let counts = counts_of(&[10, 20, 30]);
        assert_eq!(percentile(&counts, 0.5, 4), None);
        assert_eq!(percentile(&counts, 0.5, 3), Some(21));
        assert_eq!(percentile(&counts_of(&[]), 0.5, 1), None);
    }

    proptest! {
        /// The estimate is the end of the bucket that holds the true
        /// (nearest-rank) percentile: above it by less than one bucket.
        #[test]
        fn estimate_within_one_bucket(
            mut samples in prop::collection::vec(
                prop_oneof![0u64..100, 0u64..100_000, 0u64..100_000_000, any::<u64>()],
                1..400,
            ),
            q in 0.001f64..0.999,
        ) {
            let est = percentile(&counts_of(&samples), q, 1).unwrap();
            samples.sort_unstable();
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            let truth = samples[rank - 1];
            let b = bucket(truth);
            prop_assert_eq!(est, bucket_end(b));
            if b < BUCKETS - 1 {
                prop_assert!(est > truth);
                let lo = if b == 0 { 0 } else { bucket_end(b - 1) };
                prop_assert!(truth >= lo);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn estimate_is_the_last_complete_window() {
        let h = LatencyHistogram::new(0.5, 3, Duration::from_secs(1));
        for ms in [10, 20, 30] {
            h.record(h.now(), ms * MS);
        }
        assert_eq!(h.estimate(h.now()), None, "window 0 is not complete");
        tokio::time::advance(Duration::from_secs(1)).await;
        // 20 ms = 20_000 µs lies in [19_456, 20_480)
        assert_eq!(h.estimate(h.now()), Some(Duration::from_micros(20_480)));
        // Samples in window 1 do not move the estimate until window 2.
        for _ in 0..3 {
            h.record(h.now(), 500 * MS);
        }
        assert_eq!(h.estimate(h.now()), Some(Duration::from_micros(20_480)));
        tokio::time::advance(Duration::from_secs(1)).await;
        let slow = h.estimate(h.now()).unwrap();
        assert!(slow > 500 * MS && slow < 520 * MS, "{slow:?}");
        // A window with too few calls leaves no estimate.
        h.record(h.now(), 500 * MS);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(h.estimate(h.now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_windows_are_forgotten() {
        let h = LatencyHistogram::new(0.5, 1, Duration::from_secs(1));
        h.record(h.now(), 5 * MS);
        tokio::time::advance(Duration::from_secs(1)).await;
        h.record(h.now(), 7 * MS);
        assert!(h.estimate(h.now()).is_some());
        // Three windows later every set is stale: nothing of window 0 or 1
        // may resurface.
        tokio::time::advance(Duration::from_secs(3)).await;
        h.record(h.now(), 9 * MS);
        assert_eq!(h.estimate(h.now()), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        let est = h.estimate(h.now()).unwrap();
        assert!(est > 9 * MS && est < 10 * MS, "{est:?}");
        // Skipping exactly one window clears the set the new window uses.
        tokio::time::advance(Duration::from_secs(2)).await;
        h.record(h.now(), 100 * MS);
        tokio::time::advance(Duration::from_secs(1)).await;
        let est = h.estimate(h.now()).unwrap();
        assert!(est > 100 * MS && est < 104 * MS, "{est:?}");
    }
}

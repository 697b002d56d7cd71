//! Per-endpoint load: requests in flight and a peak-EWMA latency estimate.
//!
//! The estimate follows Finagle's and tower's peak EWMA: a latency above
//! the estimate replaces it at once (the peak), one below it is blended in
//! with a weight that grows with the time since the last update
//! (`1 - e^(-elapsed/decay)`), and while no answer arrives the estimate
//! decays toward zero at the same rate, so an endpoint that was slow long
//! ago is tried again. The cost a strategy compares is the estimate times
//! `pending + 1`.
//!
//! Unlike tower, reading the cost writes nothing: the decay since the last
//! answer is computed from two atomics and the pick's one clock reading.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
/// The load state of one endpoint, shared by the balancer and the
/// response futures of requests sent to it.
#[derive(Debug)]
pub(crate) struct EndpointLoad {
    pending: AtomicU32,
    /// The estimate, as `f64` bits, in nanoseconds.
    rtt_bits: AtomicU64,
    /// When the estimate was last updated, in nanoseconds of `origin`.
    updated_at: AtomicU64,
    /// Serialises updates (answers), never reads.
    update: Mutex<()>,
}

impl EndpointLoad {
    pub(crate) fn new(default_rtt_ns: f64, now_ns: u64) -> Self {
        Self {
            pending: AtomicU32::new(0),
            rtt_bits: AtomicU64::new(default_rtt_ns.to_bits()),
            updated_at: AtomicU64::new(now_ns),
            update: Mutex::new(()),
        }
    }

    pub(crate) fn pending(&self) -> u32 {
        self.pending.load(Ordering::Relaxed)
    }

    pub(crate) fn start(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finish(&self) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }

    /// The latency estimate at `now_ns`, decayed since the last answer.
    pub(crate) fn estimate(&self, now_ns: u64, decay_ns: f64) -> f64 {
        let rtt = f64::from_bits(self.rtt_bits.load(Ordering::Relaxed));
        let at = self.updated_at.load(Ordering::Relaxed);
        let elapsed = now_ns.saturating_sub(at) as f64;
        if elapsed == 0.0 {
            rtt
        } else {
            rtt * (-elapsed / decay_ns).exp()
        }
    }

    /// The cost a strategy compares: the estimate times `pending + 1`.
    pub(crate) fn cost(&self, now_ns: u64, decay_ns: f64) -> f64 {
        self.estimate(now_ns, decay_ns) * f64::from(self.pending() + 1)
    }

    /// Folds in one answer that took `rtt_ns`, received at `now_ns`.
    pub(crate) fn observe(&self, rtt_ns: f64, now_ns: u64, decay_ns: f64) {
        let _serial = self.update.lock().unwrap_or_else(|p| p.into_inner());
        let prior = f64::from_bits(self.rtt_bits.load(Ordering::Relaxed));
        let at = self.updated_at.load(Ordering::Relaxed);
        let next = if rtt_ns > prior {
            rtt_ns
        } else {
            let elapsed = now_ns.saturating_sub(at) as f64;
            let decay = (-elapsed / decay_ns).exp();
            prior * decay + rtt_ns * (1.0 - decay)
        };
        self.rtt_bits.store(next.to_bits(), Ordering::Relaxed);
        self.updated_at.store(now_ns.max(at), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECAY: f64 = 10e9; // 10 s

    #[test]
    fn a_slower_answer_is_taken_at_once() {
        let load = EndpointLoad::new(1e6, 0);
        load.observe(50e6, 1_000, DECAY);
        assert_eq!(load.estimate(1_000, DECAY), 50e6);
    }

    #[test]
    fn a_faster_answer_is_blended_by_recency() {
        let load = EndpointLoad::new(100e6, 0);
        // 10 s later (one decay period): weight e^-1 on the prior
        load.observe(10e6, 10_000_000_000, DECAY);
        let expected = 100e6 * (-1.0_f64).exp() + 10e6 * (1.0 - (-1.0_f64).exp());
        assert!((load.estimate(10_000_000_000, DECAY) - expected).abs() < 1.0);
        // at once after: almost no weight on the new value
        let load = EndpointLoad::new(100e6, 0);
        load.observe(10e6, 1, DECAY);
        assert!(load.estimate(1, DECAY) > 99.9e6);
    }

    #[test]
    fn the_estimate_decays_while_idle_and_cost_scales_with_pending() {
        let load = EndpointLoad::new(100e6, 0);
        let later = load.estimate(20_000_000_000, DECAY);
        assert!((later - 100e6 * (-2.0_f64).exp()).abs() < 1.0);
        load.start();
        load.start();
        assert_eq!(load.cost(0, DECAY), 300e6);
        load.finish();
        assert_eq!(load.pending(), 1);
    }
}

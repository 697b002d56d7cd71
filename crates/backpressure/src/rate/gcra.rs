//! The generic cell rate algorithm, lock-free.
//!
//! The state is one "theoretical arrival time" (TAT): the instant, in
//! nanoseconds since the limiter was built, at which the limiter would be
//! back to a full burst. A call at `now` conforms when
//! `max(tat, now) - tolerance <= now`, where the tolerance is
//! `(burst - 1) × interval`; admitting it moves the TAT to
//! `max(tat, now) + interval`. That is one load and one CAS per call.
//!
//! A call that may wait reserves a slot in the future the same way: the
//! TAT still moves by one interval, and the call learns how long to wait
//! until its slot. A reservation given up before its slot is refunded.
//!
//! # Rate changes
//!
//! The interval lives in two slots, picked by the parity of an epoch kept
//! in the low bits of the state word beside the TAT. A rate change (rare,
//! serialised by a lock that callers never take) writes the other slot and
//! then moves the state to the next epoch in one CAS, so a call judges
//! with the interval of the epoch it read and its own CAS fails if the
//! epoch moved meanwhile: no call is ever judged with one rate and charged
//! against the other's state.
//!
//! Slowing down re-prices the TAT's debt (`tat - now`, the calls still
//! counted against the limiter) at the new interval, so that a slower rate
//! never grants a fresh burst on top of calls the faster one just let
//! through; speeding up keeps the debt as it is, so calls admitted at the
//! old rate keep their slots. Either way, calls admitted at one instant
//! never outnumber the burst.
// Under `--cfg rampart_loom` this module is public (hidden) so that the
// integration test `tests/loom.rs` can drive it; otherwise it is private
// and its `pub` items are crate-internal.
#![cfg_attr(not(rampart_loom), allow(unreachable_pub))]

use std::time::Duration;

use rampart_core::clock::{Origin, nanos};

use crate::sync::Ordering::{AcqRel, Acquire, Release};
use crate::sync::{AtomicU64, Mutex};

/// Low bits of the state word that hold the epoch.
const EPOCH_BITS: u32 = 4;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;
/// The latest TAT the state holds: 2^60 ns, about 36 years after the
/// limiter was built.
const MAX_TAT: u64 = u64::MAX >> EPOCH_BITS;

fn pack(tat: u64, epoch: u64) -> u64 {
    (tat.min(MAX_TAT) << EPOCH_BITS) | (epoch & EPOCH_MASK)
}

fn tat_of(state: u64) -> u64 {
    state >> EPOCH_BITS
}

fn epoch_of(state: u64) -> u64 {
    state & EPOCH_MASK
}

/// The verdict on one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted now.
    Now,
    /// A slot was reserved this far in the future.
    After(Duration),
    /// Refused; a token is due after this long.
    Refused(Duration),
}

/// One GCRA limiter's state. The `*_at` methods take the clock as a
/// function returning nanoseconds since the limiter was built (for the
/// model checks); the others read tokio's clock.
#[derive(Debug)]
pub struct Gcra {
    origin: Origin,
    /// `tat << EPOCH_BITS | epoch`.
    state: AtomicU64,
    /// Nanoseconds per token, for even and odd epochs.
    intervals: [AtomicU64; 2],
    burst: u64,
    /// Serialises rate changes; calls never take it.
    changing: Mutex<()>,
}

impl Gcra {
    /// A limiter spacing calls `interval` apart with bursts of `burst`.
    pub fn new(interval: Duration, burst: u32) -> Self {
        let t = nanos(interval).max(1);
        Self {
            origin: Origin::new(),
            state: AtomicU64::new(pack(0, 0)),
            intervals: [AtomicU64::new(t), AtomicU64::new(t)],
            burst: u64::from(burst.max(1)),
            changing: Mutex::new(()),
        }
    }

    fn now(&self) -> u64 {
        self.origin.nanos()
    }

    /// The current spacing of calls.
    pub fn interval(&self) -> Duration {
        let state = self.state.load(Acquire);
        Duration::from_nanos(self.params(state).0)
    }

    /// The burst size.
    pub fn burst(&self) -> u32 {
        u32::try_from(self.burst).unwrap_or(u32::MAX)
    }

    /// `(interval, tolerance)` in nanoseconds, for the epoch of `state`.
    fn params(&self, state: u64) -> (u64, u64) {
        let t = self.intervals[(epoch_of(state) & 1) as usize].load(Acquire);
        (t, t.saturating_mul(self.burst - 1))
    }

    /// Changes the rate now; see the module docs.
    pub fn set_interval(&self, interval: Duration) {
        self.set_interval_at(interval, &|| self.now());
    }

    /// Changes the rate at the time `clock` reads.
    pub fn set_interval_at(&self, interval: Duration, clock: &impl Fn() -> u64) {
        let new = nanos(interval).max(1);
        let _changing = self
            .changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut state = self.state.load(Acquire);
        let epoch = epoch_of(state);
        // Only rate changes write an interval slot, and they hold the lock:
        // the current slot is stable and the other one is unused.
        let old = self.params(state).0;
        self.intervals[((epoch + 1) & 1) as usize].store(new, Release);
        loop {
            let now = clock();
            let tat = tat_of(state);
            let tat = if new > old && tat > now {
                let debt = u128::from(tat - now) * u128::from(new) / u128::from(old);
                now.saturating_add(u64::try_from(debt).unwrap_or(u64::MAX))
            } else {
                tat
            };
            match self
                .state
                .compare_exchange_weak(state, pack(tat, epoch + 1), AcqRel, Acquire)
            {
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
    }

    /// How long until a call would be admitted at once; zero when it would
    /// be now. Takes nothing.
    pub fn wait_time(&self) -> Duration {
        let state = self.state.load(Acquire);
        let now = self.now();
        let (_, tau) = self.params(state);
        let tat = tat_of(state).max(now);
        Duration::from_nanos(tat.saturating_sub(tau).saturating_sub(now))
    }

    /// Takes a token now, or reserves one due within `max_wait` (none:
    /// only now).
    pub fn acquire(&self, max_wait: Option<Duration>) -> Verdict {
        self.acquire_at(max_wait, &|| self.now())
    }

    /// [`acquire`](Self::acquire) at the time `clock` reads.
    pub fn acquire_at(&self, max_wait: Option<Duration>, clock: &impl Fn() -> u64) -> Verdict {
        let max_wait = max_wait.map_or(0, nanos);
        // The state first, the clock second: a thread descheduled in
        // between then sees a later clock, never an arrival time that others
        // moved past a clock it read before the pause. The interval is read
        // for the epoch of that state, on every try.
        let mut state = self.state.load(Acquire);
        let mut now = clock();
        loop {
            let (t, tau) = self.params(state);
            let start = tat_of(state).max(now);
            let wait = start.saturating_sub(tau).saturating_sub(now);
            if wait > max_wait {
                return Verdict::Refused(Duration::from_nanos(wait));
            }
            let next = pack(start.saturating_add(t), epoch_of(state));
            match self
                .state
                .compare_exchange_weak(state, next, AcqRel, Acquire)
            {
                Ok(_) if wait == 0 => return Verdict::Now,
                Ok(_) => return Verdict::After(Duration::from_nanos(wait)),
                Err(actual) => {
                    // Another caller moved the arrival time, maybe while
                    // this thread was descheduled: judge against the time
                    // now, not the time read before the race, or a stall
                    // would turn into a refusal.
                    state = actual;
                    now = clock();
                }
            }
        }
    }

    /// Gives back one reserved token that will not be used.
    pub fn refund(&self) {
        self.refund_at(&|| self.now());
    }

    /// [`refund`](Self::refund) at the time `clock` reads.
    pub fn refund_at(&self, clock: &impl Fn() -> u64) {
        let now = clock();
        let mut state = self.state.load(Acquire);
        while tat_of(state) > now {
            let (t, _) = self.params(state);
            let tat = tat_of(state).saturating_sub(t).max(now);
            match self.state.compare_exchange_weak(
                state,
                pack(tat, epoch_of(state)),
                AcqRel,
                Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
    }
}

#[cfg(all(test, not(rampart_loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn at(now: u64) -> impl Fn() -> u64 {
        move || now
    }

    fn admitted_at_once(g: &Gcra, now: u64) -> usize {
        (0..100)
            .take_while(|_| g.acquire_at(None, &at(now)) == Verdict::Now)
            .count()
    }

    #[test]
    fn a_burst_then_even_spacing() {
        let g = Gcra::new(Duration::from_millis(10), 3);
        assert_eq!(admitted_at_once(&g, 0), 3);
        assert_eq!(
            g.acquire_at(None, &at(0)),
            Verdict::Refused(Duration::from_millis(10))
        );
        assert_eq!(admitted_at_once(&g, 10 * MS), 1);
    }

    #[test]
    fn slowing_down_grants_no_fresh_burst() {
        let g = Gcra::new(Duration::from_millis(1), 10);
        assert_eq!(admitted_at_once(&g, 0), 10);
        g.set_interval_at(Duration::from_secs(1), &at(0));
        assert_eq!(g.interval(), Duration::from_secs(1));
        // The ten calls now count ten seconds: the next token is due in one.
        assert_eq!(
            g.acquire_at(None, &at(0)),
            Verdict::Refused(Duration::from_secs(1))
        );
        assert_eq!(admitted_at_once(&g, 1_000 * MS), 1);
    }

    #[test]
    fn speeding_up_keeps_the_debt() {
        let g = Gcra::new(Duration::from_secs(1), 2);
        assert_eq!(admitted_at_once(&g, 0), 2);
        g.set_interval_at(Duration::from_millis(100), &at(0));
        // Two seconds of debt stay two seconds: no more at this instant.
        assert_eq!(admitted_at_once(&g, 0), 0);
        assert_eq!(
            g.acquire_at(None, &at(0)),
            Verdict::Refused(Duration::from_millis(1_900))
        );
    }

    #[test]
    fn every_change_moves_the_epoch_and_keeps_the_tat() {
        let g = Gcra::new(Duration::from_millis(5), 1);
        assert_eq!(g.acquire_at(None, &at(0)), Verdict::Now);
        for i in 0..40u64 {
            g.set_interval_at(Duration::from_millis(5), &at(0));
            let state = g.state.load(Acquire);
            assert_eq!(epoch_of(state), (i + 1) & EPOCH_MASK);
            assert_eq!(tat_of(state), 5 * MS);
        }
    }

    #[test]
    fn refund_gives_back_one_interval() {
        let g = Gcra::new(Duration::from_millis(10), 1);
        assert_eq!(g.acquire_at(None, &at(0)), Verdict::Now);
        assert_eq!(
            g.acquire_at(Some(Duration::from_secs(1)), &at(0)),
            Verdict::After(Duration::from_millis(10))
        );
        g.refund_at(&at(0));
        assert_eq!(tat_of(g.state.load(Acquire)), 10 * MS);
    }

    #[test]
    fn the_tat_saturates_below_the_epoch_bits() {
        assert_eq!(tat_of(pack(u64::MAX, 3)), MAX_TAT);
        assert_eq!(epoch_of(pack(u64::MAX, 3)), 3);
        assert_eq!(epoch_of(pack(7, EPOCH_MASK + 1)), 0);
    }
}

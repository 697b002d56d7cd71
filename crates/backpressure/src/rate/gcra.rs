//! The generic cell rate algorithm, lock-free.
//!
//! The whole state is one "theoretical arrival time" (TAT): the instant,
//! in nanoseconds since the limiter was built, at which the limiter would
//! be back to a full burst. A call at `now` conforms when
//! `max(tat, now) - tolerance <= now`, where the tolerance is
//! `(burst - 1) × interval`; admitting it moves the TAT to
//! `max(tat, now) + interval`. That is one load and one CAS per call.
//!
//! A call that may wait reserves a slot in the future the same way: the
//! TAT still moves by one interval, and the call learns how long to wait
//! until its slot. A reservation given up before its slot is refunded.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::time::Duration;

use rampart_core::clock::Origin;
use rampart_core::clock::nanos;

/// The verdict on one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Admitted now.
    Now,
    /// A slot was reserved this far in the future.
    After(Duration),
    /// Refused; a token is due after this long.
    Refused(Duration),
}

#[derive(Debug)]
pub(crate) struct Gcra {
    origin: Origin,
    tat: AtomicU64,
    /// Nanoseconds per token.
    interval: AtomicU64,
    burst: AtomicU64,
}

impl Gcra {
    pub(crate) fn new(interval: Duration, burst: u32) -> Self {
        Self {
            origin: Origin::new(),
            tat: AtomicU64::new(0),
            interval: AtomicU64::new(nanos(interval).max(1)),
            burst: AtomicU64::new(u64::from(burst.max(1))),
        }
    }

    fn now(&self) -> u64 {
        self.origin.nanos()
    }

    pub(crate) fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval.load(Relaxed))
    }

    pub(crate) fn burst(&self) -> u32 {
        u32::try_from(self.burst.load(Relaxed)).unwrap_or(u32::MAX)
    }

    /// Changes the rate; calls already admitted or reserved keep their
    /// slots.
    pub(crate) fn set_interval(&self, interval: Duration) {
        self.interval.store(nanos(interval).max(1), Release);
    }

    /// `(interval, tolerance)` in nanoseconds.
    fn params(&self) -> (u64, u64) {
        let t = self.interval.load(Acquire);
        let tau = t.saturating_mul(self.burst.load(Acquire) - 1);
        (t, tau)
    }

    /// How long until a call would be admitted at once; zero when it would
    /// be now. Takes nothing.
    pub(crate) fn wait_time(&self) -> Duration {
        let now = self.now();
        let (_, tau) = self.params();
        let tat = self.tat.load(Acquire).max(now);
        Duration::from_nanos(tat.saturating_sub(tau).saturating_sub(now))
    }

    /// Takes a token now, or reserves one due within `max_wait` (none:
    /// only now).
    pub(crate) fn acquire(&self, max_wait: Option<Duration>) -> Verdict {
        let (t, tau) = self.params();
        let max_wait = max_wait.map_or(0, nanos);
        // The arrival time first, the clock second: a thread descheduled in
        // between then sees a later clock, never an arrival time that others
        // moved past a clock it read before the pause.
        let mut tat = self.tat.load(Acquire);
        let mut now = self.now();
        loop {
            let start = tat.max(now);
            let wait = start.saturating_sub(tau).saturating_sub(now);
            if wait > max_wait {
                return Verdict::Refused(Duration::from_nanos(wait));
            }
            match self
                .tat
                .compare_exchange_weak(tat, start.saturating_add(t), AcqRel, Acquire)
            {
                Ok(_) if wait == 0 => return Verdict::Now,
                Ok(_) => return Verdict::After(Duration::from_nanos(wait)),
                Err(actual) => {
                    // Another caller moved the arrival time, maybe while
                    // this thread was descheduled: judge against the time
                    // now, not the time read before the race, or a stall
                    // would turn into a refusal.
                    tat = actual;
                    now = self.now();
                }
            }
        }
    }

    /// Gives back one reserved token that will not be used.
    pub(crate) fn refund(&self) {
        let now = self.now();
        let t = self.interval.load(Acquire);
        let mut tat = self.tat.load(Acquire);
        while tat > now {
            let new = tat.saturating_sub(t).max(now);
            match self.tat.compare_exchange_weak(tat, new, AcqRel, Acquire) {
                Ok(_) => return,
                Err(actual) => tat = actual,
            }
        }
    }
}

//! The permit accounting of an adaptive limiter, free of tokio types so
//! that loom can model-check it (`tests/loom/adaptive.rs`).
//!
//! `state` holds the calls in flight shifted left by one, and a flag bit
//! that is set exactly while callers wait in the FIFO queue `waiters`:
//!
//! - **Fast path** ([`Core::try_acquire`]): one CAS on `state`, taken only
//!   when nobody waits and fewer calls than the limit are in flight, so a
//!   newcomer never overtakes a waiter. No lock, no allocation.
//! - **Slow path** ([`Core::acquire_or_enqueue`]): under the queue lock,
//!   take a permit if nobody waits and one is free, otherwise join the back
//!   of the queue and set the flag.
//! - **Release** ([`Core::release`]): one `fetch_sub` on `state`; only when
//!   the flag was set does it take the lock and hand the freed permit to the
//!   waiter at the front, which then owns it (no race among woken callers).
//!
//! Setting the flag and releasing are read-modify-writes of the same atomic,
//! so they are totally ordered: either the release sees the flag and hands
//! the permit over, or the queuing caller, which looks for a free permit
//! after setting the flag, sees the release. No wake-up is lost. A waiter
//! that gives up after a permit was handed to it owns that permit and
//! releases it, which hands it to the next waiter.
//!
//! The limit is a fixed-point number (× [`SCALE`]) so that an algorithm can
//! move it by a fraction of a call. It may change at any time
//! ([`Core::update_limit`]): growing hands permits to waiters at once;
//! shrinking only stops new admissions until enough calls complete, it never
//! revokes a permit.
// Under `--cfg rampart_loom` this module is public (hidden) so that the
// integration test `tests/loom.rs` can drive it; otherwise it is private and
// its `pub` items are crate-internal.
#![cfg_attr(not(rampart_loom), allow(unreachable_pub))]

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, PoisonError};
use std::task::Waker;

use crate::sync::Ordering::{AcqRel, Acquire, Relaxed};
use crate::sync::{AtomicU64, AtomicUsize, Mutex};

/// One call, in units of the fixed-point limit.
pub const SCALE: u64 = 1024;

/// Flag bit of `state`: callers wait in the queue.
const WAITING: usize = 1;
/// One call in flight, in units of `state`.
const CALL: usize = 2;

/// Permits bounded by an adaptive limit, with a FIFO queue of waiters.
pub struct Core {
    /// `in_flight << 1 | WAITING`.
    state: AtomicUsize,
    /// The limit × [`SCALE`].
    limit: AtomicU64,
    /// Length of `queue`, readable without the lock.
    waiting: AtomicUsize,
    queue: Mutex<VecDeque<Arc<Waiter>>>,
}

/// A caller in the queue, shared between the queue and the caller.
pub struct Waiter {
    turn: Mutex<Turn>,
}

struct Turn {
    /// A permit was taken on this waiter's behalf: it owns it now.
    granted: bool,
    /// The task to wake when that happens.
    waker: Option<Waker>,
}

/// What [`Core::acquire_or_enqueue`] did.
pub enum Entry {
    /// A permit was taken, with this many calls now in flight; the caller
    /// owns it and must [`release`](Core::release) it.
    Admitted(usize),
    /// The caller joined the queue: poll the waiter until it is granted,
    /// and [`cancel`](Core::cancel) it when giving up.
    Queued(Arc<Waiter>),
}

fn lock<T>(mutex: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    // The critical sections run no user code and leave the data consistent
    // at every step: a poisoned lock still guards valid data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl Core ===

impl Core {
    /// A core whose limit is `limit` (× [`SCALE`]).
    pub fn new(limit: u64) -> Self {
        Self {
            state: AtomicUsize::new(0),
            limit: AtomicU64::new(limit),
            waiting: AtomicUsize::new(0),
            queue: Mutex::new(VecDeque::new()),
        }
    }

    /// The limit on calls in flight (the whole part of the fixed point).
    pub fn limit(&self) -> usize {
        usize::try_from(self.limit.load(Acquire) / SCALE).unwrap_or(usize::MAX)
    }

    /// Calls in flight, including permits handed to waiters that have not
    /// noticed yet.
    pub fn in_flight(&self) -> usize {
        self.state.load(Acquire) >> 1
    }

    /// Callers in the queue.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Relaxed)
    }

    /// `true` when a newcomer would be admitted now: nobody waits and fewer
    /// calls than the limit are in flight.
    pub fn has_room(&self) -> bool {
        let state = self.state.load(Acquire);
        state & WAITING == 0 && state >> 1 < self.limit()
    }

    /// Takes a permit if nobody waits and one is free: one CAS loop, no
    /// lock, no allocation. Returns the calls now in flight; the caller
    /// must [`release`](Self::release) the permit.
    pub fn try_acquire(&self) -> Option<usize> {
        self.acquire(false)
    }

    /// Takes a permit if one is free; waiters are ignored when `for_waiter`
    /// (under the lock, on behalf of the front waiter).
    fn acquire(&self, for_waiter: bool) -> Option<usize> {
        let mut state = self.state.load(Acquire);
        loop {
            if (!for_waiter && state & WAITING != 0) || state >> 1 >= self.limit() {
                return None;
            }
            match self
                .state
                .compare_exchange_weak(state, state + CALL, AcqRel, Acquire)
            {
                Ok(_) => return Some((state >> 1) + 1),
                Err(actual) => state = actual,
            }
        }
    }

    /// The slow path: takes a permit if nobody waits and one is free,
    /// otherwise queues the caller behind those already waiting.
    pub fn acquire_or_enqueue(&self) -> Entry {
        let mut wake = Wakers::default();
        let entry = {
            let mut queue = lock(&self.queue);
            match queue.is_empty().then(|| self.acquire(true)).flatten() {
                Some(in_flight) => Entry::Admitted(in_flight),
                None => {
                    let waiter = Arc::new(Waiter {
                        turn: Mutex::new(Turn {
                            granted: false,
                            waker: None,
                        }),
                    });
                    queue.push_back(waiter.clone());
                    // Every release from here on sees the flag and hands
                    // its permit over; one that came before is seen by the
                    // grant below.
                    self.state.fetch_or(WAITING, AcqRel);
                    self.grant_locked(&mut queue, &mut wake);
                    Entry::Queued(waiter)
                }
            }
        };
        wake.wake_all();
        entry
    }

    /// Withdraws `waiter` from the queue. Returns `true` when a permit had
    /// been handed to it already: the caller owns that permit and must
    /// keep it or [`release`](Self::release) it (which passes it on).
    pub fn cancel(&self, waiter: &Arc<Waiter>) -> bool {
        let mut wake = Wakers::default();
        {
            let mut queue = lock(&self.queue);
            // `granted` only changes under the queue lock, held here.
            if lock(&waiter.turn).granted {
                return true;
            }
            if let Some(at) = queue.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                queue.remove(at);
            }
            // The waiters behind may be served now (after a shrink, the
            // front one may have been the only one without room).
            self.grant_locked(&mut queue, &mut wake);
        }
        wake.wake_all();
        false
    }

    /// Returns one permit, handing it to the front waiter if any.
    pub fn release(&self) {
        let previous = self.state.fetch_sub(CALL, AcqRel);
        debug_assert!(previous >> 1 > 0, "released more permits than taken");
        if previous & WAITING != 0 {
            self.grant();
        }
    }

    /// Applies `update` to the fixed-point limit (`None`: no change), as
    /// one atomic step. When the whole limit grows, hands the new room to
    /// waiters at once. Returns the limits before and after.
    pub fn update_limit(&self, update: impl FnMut(u64) -> Option<u64>) -> Option<(u64, u64)> {
        let mut update = update;
        let mut next = 0;
        let previous = self
            .limit
            .fetch_update(AcqRel, Acquire, |limit| {
                next = update(limit)?;
                Some(next)
            })
            .ok()?;
        if next / SCALE > previous / SCALE {
            // Always under the lock: a caller queuing now either sees the
            // new limit or is queued before this grant looks.
            self.grant();
        }
        Some((previous, next))
    }

    fn grant(&self) {
        let mut wake = Wakers::default();
        {
            let mut queue = lock(&self.queue);
            self.grant_locked(&mut queue, &mut wake);
        }
        wake.wake_all();
    }

    /// Hands free permits to the waiters at the front, in order, then keeps
    /// `waiting` and the flag in step with the queue.
    fn grant_locked(&self, queue: &mut VecDeque<Arc<Waiter>>, wake: &mut Wakers) {
        while !queue.is_empty() && self.acquire(true).is_some() {
            if let Some(waiter) = queue.pop_front() {
                let mut turn = lock(&waiter.turn);
                turn.granted = true;
                if let Some(waker) = turn.waker.take() {
                    wake.push(waker);
                }
            }
        }
        self.waiting.store(queue.len(), Relaxed);
        if queue.is_empty() {
            self.state.fetch_and(!WAITING, AcqRel);
        }
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("waiting", &self.waiting())
            .finish()
    }
}

// === impl Waiter ===

impl Waiter {
    /// `true` once a permit was handed to this waiter (it owns it now);
    /// otherwise keeps `waker` to be woken when that happens.
    pub fn poll_granted(&self, waker: &Waker) -> bool {
        let mut turn = lock(&self.turn);
        if turn.granted {
            return true;
        }
        match &mut turn.waker {
            Some(known) if known.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        false
    }
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("granted", &lock(&self.turn).granted)
            .finish()
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Admitted(in_flight) => f.debug_tuple("Admitted").field(in_flight).finish(),
            Entry::Queued(waiter) => f.debug_tuple("Queued").field(waiter).finish(),
        }
    }
}

// === impl Wakers ===

/// Wakers gathered under the lock and woken once it is released, so that a
/// waker running code inline cannot deadlock on the queue. One hand-off,
/// the common case, does not allocate.
#[derive(Default)]
struct Wakers {
    first: Option<Waker>,
    more: Vec<Waker>,
}

impl Wakers {
    fn push(&mut self, waker: Waker) {
        match self.first {
            None => self.first = Some(waker),
            Some(_) => self.more.push(waker),
        }
    }

    fn wake_all(self) {
        self.first
            .into_iter()
            .chain(self.more)
            .for_each(Waker::wake);
    }
}

#[cfg(all(test, not(rampart_loom)))]
mod tests {
    use super::*;
    use std::task::Waker;

    fn core(limit: u64) -> Core {
        Core::new(limit * SCALE)
    }

    fn queued(entry: Entry) -> Arc<Waiter> {
        match entry {
            Entry::Queued(waiter) => waiter,
            Entry::Admitted(_) => panic!("expected to queue"),
        }
    }

    #[test]
    fn released_permits_go_to_waiters_in_order() {
        let core = core(1);
        assert_eq!(core.try_acquire(), Some(1));
        let first = queued(core.acquire_or_enqueue());
        let second = queued(core.acquire_or_enqueue());
        assert_eq!(core.waiting(), 2);
        assert!(!core.has_room());
        core.release();
        assert!(first.poll_granted(Waker::noop()));
        assert!(!second.poll_granted(Waker::noop()));
        // The fast path does not take the permit meant for `second`.
        core.release();
        assert_eq!(core.try_acquire(), None);
        assert!(second.poll_granted(Waker::noop()));
        core.release();
        assert_eq!(core.in_flight(), 0);
        assert!(core.has_room());
    }

    #[test]
    fn a_cancelled_waiter_passes_its_permit_on() {
        let core = core(1);
        core.try_acquire().unwrap();
        let a = queued(core.acquire_or_enqueue());
        let b = queued(core.acquire_or_enqueue());
        let c = queued(core.acquire_or_enqueue());
        assert!(!core.cancel(&b), "b had no permit yet");
        core.release();
        assert!(core.cancel(&a), "a owned the freed permit");
        core.release();
        assert!(c.poll_granted(Waker::noop()), "b's turn was skipped");
        core.release();
        assert_eq!((core.in_flight(), core.waiting()), (0, 0));
    }

    #[test]
    fn growing_the_limit_serves_waiters_and_shrinking_revokes_nothing() {
        let core = core(1);
        core.try_acquire().unwrap();
        let a = queued(core.acquire_or_enqueue());
        let b = queued(core.acquire_or_enqueue());
        assert_eq!(
            core.update_limit(|_| Some(2 * SCALE + SCALE / 2)),
            Some((SCALE, 2 * SCALE + SCALE / 2))
        );
        assert!(a.poll_granted(Waker::noop()));
        assert!(!b.poll_granted(Waker::noop()));
        core.update_limit(|_| Some(SCALE));
        assert_eq!((core.in_flight(), core.limit()), (2, 1));
        core.release();
        assert!(!b.poll_granted(Waker::noop()), "still at the shrunk limit");
        core.release();
        assert!(b.poll_granted(Waker::noop()));
        assert_eq!(core.update_limit(|_| None), None);
    }
}

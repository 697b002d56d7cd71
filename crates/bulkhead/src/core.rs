//! The permit accounting, free of tokio types so that loom can model-check
//! it (`tests/loom.rs`).
//!
//! `state` packs the number of permits in use (shifted left by one) with a
//! flag bit that is set exactly while the waiter queue is non-empty:
//!
//! - **Fast path** ([`Core::try_acquire`]): one CAS on `state`, taken only
//!   while no one is queued (so newcomers do not overtake waiters) and fewer
//!   than `limit` permits are in use. No lock, no allocation.
//! - **Slow path** ([`Core::acquire_or_enqueue`]): under the queue lock, take
//!   a permit if the queue is empty and one is free, otherwise queue a
//!   [`Waiter`] (bounded by `max_queued`) and set the flag.
//! - **Release** ([`Core::release`]): one `fetch_sub` on `state`; only when
//!   the value it returns has the flag set does it take the lock and hand
//!   free permits to the waiters at the front, in FIFO order.
//!
//! Setting the flag and releasing are both read-modify-writes of `state`, so
//! they are totally ordered: either a release sees the flag and grants, or
//! the queuing thread sees the release's decrement when it tries to grant
//! after setting the flag. No wake-up is lost. A waiter is granted a permit
//! on its behalf (the count already includes it), so a waiter that gives up
//! after being granted must release that permit, which passes it on.
//!
//! The limit may change at any time ([`Core::set_limit`]): growing grants
//! queued waiters at once; shrinking only stops new grants until enough
//! permits come back, it never revokes one.
// Under `--cfg rampart_loom` this module is public (hidden) so that the
// integration test `tests/loom.rs` can drive it; otherwise it is private and
// its `pub` items are crate-internal.
#![cfg_attr(not(rampart_loom), allow(unreachable_pub))]

use std::collections::VecDeque;
use std::fmt;
use std::task::Waker;

use crate::sync::Ordering::{AcqRel, Acquire, Relaxed, Release};
use crate::sync::{Arc, AtomicUsize, Mutex, lock};

/// Flag bit of `state`: the waiter queue is non-empty.
const WAITERS: usize = 1;
/// One permit, in units of `state`.
const ONE: usize = 2;

/// The largest limit the core supports.
pub const MAX_PERMITS: usize = usize::MAX >> 2;

/// Bounded permits with a FIFO queue of waiters.
/// An atomic alone on its cache lines (128 bytes: a line and the neighbour
/// the prefetcher pairs with it).
#[derive(Debug)]
#[repr(align(128))]
struct Padded(AtomicUsize);

pub struct Core {
    /// `in_flight << 1 | WAITERS`, alone on its cache lines: it is written
    /// by every call.
    state: Padded,
    /// The most permits handed out at once.
    limit: AtomicUsize,
    /// Length of `waiters`, readable without the lock.
    queued: AtomicUsize,
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
}

/// One queued caller, shared between the queue and the caller.
pub struct Waiter {
    slot: Mutex<Slot>,
}

struct Slot {
    /// A permit was taken on this waiter's behalf; it now owns it.
    granted: bool,
    waker: Option<Waker>,
}

/// The result of [`Core::acquire_or_enqueue`].
pub enum Entry {
    /// A permit was taken; the caller owns it and must release it.
    Admitted,
    /// The caller is queued; poll the waiter, and cancel it when giving up.
    Queued(Arc<Waiter>),
    /// No permit is free and the queue is full.
    QueueFull,
}

// === impl Core ===

impl Core {
    /// A core handing out at most `limit` permits at once.
    pub fn new(limit: usize) -> Self {
        Self {
            state: Padded(AtomicUsize::new(0)),
            limit: AtomicUsize::new(limit.min(MAX_PERMITS)),
            queued: AtomicUsize::new(0),
            waiters: Mutex::new(VecDeque::new()),
        }
    }

    /// The most permits handed out at once.
    pub fn limit(&self) -> usize {
        self.limit.load(Acquire)
    }

    /// Permits in use, including those granted to waiters that have not yet
    /// noticed.
    pub fn in_flight(&self) -> usize {
        self.state.0.load(Acquire) >> 1
    }

    /// Waiters in the queue.
    pub fn queued(&self) -> usize {
        self.queued.load(Relaxed)
    }

    /// Takes a permit if one is free and nobody is queued. One CAS loop; no
    /// lock and no allocation. On `true` the caller must [`release`] later.
    ///
    /// [`release`]: Core::release
    pub fn try_acquire(&self) -> bool {
        self.acquire(false)
    }

    /// Takes a permit if `state` allows it; waiters are ignored when
    /// `overtake` is set (used under the lock, on behalf of the front
    /// waiter).
    fn acquire(&self, overtake: bool) -> bool {
        let mut cur = self.state.0.load(Acquire);
        loop {
            if (!overtake && cur & WAITERS != 0) || cur >> 1 >= self.limit.load(Acquire) {
                return false;
            }
            match self
                .state
                .0
                .compare_exchange(cur, cur + ONE, AcqRel, Acquire)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The slow path: takes a permit if the queue is empty and one is free,
    /// otherwise queues the caller unless `max_queued` waiters are queued
    /// already.
    pub fn acquire_or_enqueue(&self, max_queued: usize) -> Entry {
        let mut wake = WakeList::default();
        let entry = {
            let mut queue = lock(&self.waiters);
            if queue.is_empty() && self.acquire(true) {
                Entry::Admitted
            } else if queue.len() >= max_queued {
                Entry::QueueFull
            } else {
                let waiter = Arc::new(Waiter {
                    slot: Mutex::new(Slot {
                        granted: false,
                        waker: None,
                    }),
                });
                queue.push_back(waiter.clone());
                // From here on every release takes the lock and grants; a
                // release that came before is visible to the grant below.
                self.state.0.fetch_or(WAITERS, AcqRel);
                self.grant_locked(&mut queue, &mut wake);
                if lock(&waiter.slot).granted {
                    Entry::Admitted
                } else {
                    Entry::Queued(waiter)
                }
            }
        };
        wake.wake_all();
        entry
    }

    /// Withdraws `waiter` from the queue. Returns `true` when it had been
    /// granted a permit already: the caller then owns that permit (keep it,
    /// or [`release`](Core::release) it to pass it on).
    pub fn cancel(&self, waiter: &Arc<Waiter>) -> bool {
        let mut wake = WakeList::default();
        {
            let mut queue = lock(&self.waiters);
            // `granted` only changes under the queue lock, which we hold.
            if lock(&waiter.slot).granted {
                return true;
            }
            if let Some(pos) = queue.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                queue.remove(pos);
            }
            self.grant_locked(&mut queue, &mut wake);
        }
        wake.wake_all();
        false
    }

    /// Returns one permit, granting it to the front waiter if any.
    pub fn release(&self) {
        let prev = self.state.0.fetch_sub(ONE, AcqRel);
        debug_assert!(prev >> 1 > 0, "released more permits than acquired");
        if prev & WAITERS != 0 {
            self.grant();
        }
    }

    /// Changes the limit. Growing grants queued waiters at once; shrinking
    /// takes effect as permits come back.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit.min(MAX_PERMITS), Release);
        // Always take the lock: a waiter queuing concurrently either sees the
        // new limit or is queued before we grant.
        self.grant();
    }

    fn grant(&self) {
        let mut wake = WakeList::default();
        {
            let mut queue = lock(&self.waiters);
            self.grant_locked(&mut queue, &mut wake);
        }
        wake.wake_all();
    }

    /// Hands free permits to the front waiters, then keeps `queued` and the
    /// flag in step with the queue.
    fn grant_locked(&self, queue: &mut VecDeque<Arc<Waiter>>, wake: &mut WakeList) {
        while !queue.is_empty() && self.acquire(true) {
            if let Some(waiter) = queue.pop_front() {
                let mut slot = lock(&waiter.slot);
                slot.granted = true;
                if let Some(waker) = slot.waker.take() {
                    wake.push(waker);
                }
            }
        }
        self.queued.store(queue.len(), Relaxed);
        if queue.is_empty() {
            self.state.0.fetch_and(!WAITERS, AcqRel);
        }
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queued())
            .finish()
    }
}

// === impl Waiter ===

impl Waiter {
    /// `true` once a permit was granted to this waiter (it then owns it);
    /// otherwise remembers `waker` to be woken when that happens.
    pub fn poll_granted(&self, waker: &Waker) -> bool {
        let mut slot = lock(&self.slot);
        if slot.granted {
            return true;
        }
        match &mut slot.waker {
            Some(old) if old.will_wake(waker) => {}
            other => *other = Some(waker.clone()),
        }
        false
    }
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("granted", &lock(&self.slot).granted)
            .finish()
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Entry::Admitted => "Admitted",
            Entry::Queued(_) => "Queued",
            Entry::QueueFull => "QueueFull",
        })
    }
}

// === impl WakeList ===

/// Wakers collected under the lock and woken after it is released, so that
/// a waker that runs code inline cannot deadlock on the queue. The common
/// case (one grant) needs no allocation.
#[derive(Default)]
struct WakeList {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl WakeList {
    fn push(&mut self, waker: Waker) {
        if self.first.is_none() {
            self.first = Some(waker);
        } else {
            self.rest.push(waker);
        }
    }

    fn wake_all(self) {
        if let Some(w) = self.first {
            w.wake();
        }
        for w in self.rest {
            w.wake();
        }
    }
}

#[cfg(all(test, not(rampart_loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::task::Waker;

    #[test]
    fn fast_path_respects_limit_and_queue() {
        let core = Core::new(2);
        assert!(core.try_acquire());
        assert!(core.try_acquire());
        assert!(!core.try_acquire());
        let Entry::Queued(w) = core.acquire_or_enqueue(1) else {
            panic!("expected to queue");
        };
        assert!(matches!(core.acquire_or_enqueue(1), Entry::QueueFull));
        core.release();
        // the released permit went to the waiter, not to the fast path
        assert!(w.poll_granted(Waker::noop()));
        assert!(!core.try_acquire());
        assert_eq!(core.in_flight(), 2);
        assert_eq!(core.queued(), 0);
        core.release();
        core.release();
        assert_eq!(core.in_flight(), 0);
    }

    #[test]
    fn newcomers_do_not_overtake_waiters() {
        let core = Core::new(1);
        assert!(core.try_acquire());
        let Entry::Queued(_w) = core.acquire_or_enqueue(4) else {
            panic!("expected to queue");
        };
        core.set_limit(3);
        // growing granted the waiter; one permit is left for the fast path
        assert_eq!(core.in_flight(), 2);
        assert!(core.try_acquire());
        assert!(!core.try_acquire());
    }

    #[test]
    fn granted_then_cancelled_passes_the_permit_on() {
        let core = Core::new(1);
        assert!(core.try_acquire());
        let Entry::Queued(a) = core.acquire_or_enqueue(2) else {
            panic!()
        };
        let Entry::Queued(b) = core.acquire_or_enqueue(2) else {
            panic!()
        };
        core.release();
        assert!(core.cancel(&a), "a was granted");
        core.release(); // a gives it back
        assert!(b.poll_granted(Waker::noop()));
        assert!(core.cancel(&b), "b owns the permit a passed on");
        core.release();
        assert_eq!(core.in_flight(), 0);
        assert_eq!(core.queued(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Acquire,
        Enqueue,
        Release,
        Cancel(usize),
        Poll(usize),
        SetLimit(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Acquire),
            Just(Op::Enqueue),
            Just(Op::Release),
            (0usize..8).prop_map(Op::Cancel),
            (0usize..8).prop_map(Op::Poll),
            (1usize..5).prop_map(Op::SetLimit),
        ]
    }

    proptest! {
        /// Whatever the sequence, permits are neither lost nor invented:
        /// `in_flight` equals the permits owned by callers plus those granted
        /// to waiters, it never exceeds the limit except after a shrink, and
        /// no waiter stays queued while a permit is free.
        #[test]
        fn accounting_holds(ops in proptest::collection::vec(op(), 1..64)) {
            let core = Core::new(2);
            let mut held = 0usize;
            let mut waiting: Vec<Arc<Waiter>> = Vec::new();
            let mut max_limit = 2;
            for op in ops {
                match op {
                    Op::Acquire => if core.try_acquire() { held += 1 },
                    Op::Enqueue => match core.acquire_or_enqueue(3) {
                        Entry::Admitted => held += 1,
                        Entry::Queued(w) => waiting.push(w),
                        Entry::QueueFull => prop_assert_eq!(core.queued(), 3),
                    },
                    Op::Release if held > 0 => { held -= 1; core.release(); }
                    Op::Release => {}
                    Op::Cancel(i) if !waiting.is_empty() => {
                        let w = waiting.remove(i % waiting.len());
                        if core.cancel(&w) { core.release(); }
                    }
                    Op::Cancel(_) => {}
                    Op::Poll(i) if !waiting.is_empty() => {
                        let i = i % waiting.len();
                        if waiting[i].poll_granted(Waker::noop()) {
                            waiting.remove(i);
                            held += 1;
                        }
                    }
                    Op::Poll(_) => {}
                    Op::SetLimit(n) => { max_limit = max_limit.max(n); core.set_limit(n); }
                }
                let granted = waiting.iter().filter(|w| lock(&w.slot).granted).count();
                prop_assert_eq!(core.in_flight(), held + granted);
                prop_assert!(core.in_flight() <= max_limit);
                prop_assert_eq!(core.queued(), waiting.len() - granted);
                if core.queued() > 0 {
                    prop_assert!(core.in_flight() >= core.limit(), "a waiter is stuck behind a free permit");
                }
                prop_assert_eq!(core.state.0.load(Relaxed) & WAITERS != 0, core.queued() > 0);
            }
            for w in waiting.drain(..) {
                if core.cancel(&w) { core.release(); }
            }
            for _ in 0..held { core.release(); }
            prop_assert_eq!(core.in_flight(), 0);
            prop_assert_eq!(core.queued(), 0);
        }
    }
}

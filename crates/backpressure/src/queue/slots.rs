//! The queue's slot accounting with first-come-first-served waiters, free
//! of tokio types so that loom can model-check it (`tests/loom.rs`).
//!
//! `state` packs the slots in use (shifted left by one) with a flag bit
//! that is set exactly while callers are waiting for a slot:
//!
//! - **Fast path** ([`Slots::try_reserve`]): one CAS on `state`, taken only
//!   while nobody waits (so a newcomer never barges past a waiter) and a
//!   slot is free. No lock, no allocation.
//! - **Slow path** ([`Slots::wait_turn`]): under the waiter lock, take a
//!   slot if nobody waits and one is free, otherwise join the back of the
//!   line and set the flag.
//! - **Release** ([`Slots::release`]): one `fetch_sub`; only when it finds
//!   the flag set does it take the lock and hand the freed slot to the
//!   waiter at the front, on its behalf.
//!
//! Setting the flag and releasing are both read-modify-writes of `state`,
//! so they are totally ordered: either the release sees the flag and
//! grants, or the joining caller sees the freed slot when it grants right
//! after setting the flag. No wake-up is lost. A waiter that gives up
//! after being granted owns the slot, and releasing it passes it on to the
//! next in line.
//!
//! tokio's `Notify` is not enough for this: `notify_waiters` wakes every
//! waiter at once (they then race, and a newcomer can win), and a waiter
//! woken by `notify_one` holds nothing until it looks again, so a newcomer
//! can still take the slot first. Granting on the waiter's behalf is what
//! keeps the order.
// Under `--cfg rampart_loom` this module is public (hidden) so that the
// integration test `tests/loom.rs` can drive it; otherwise it is private
// and its `pub` items are crate-internal.
#![cfg_attr(not(rampart_loom), allow(unreachable_pub))]

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, PoisonError};
use std::task::Waker;

use crate::sync::Ordering::{AcqRel, Acquire};
use crate::sync::{AtomicUsize, Mutex};

/// Flag bit of `state`: callers are waiting.
const WAITERS: usize = 1;
/// One slot, in units of `state`.
const ONE: usize = 2;

/// Runs `f` under `mutex`, ignoring poisoning: the critical sections call
/// no user code (only `Waker::clone` and drop) and leave the data
/// consistent at every step.
fn with<T, R>(mutex: &Mutex<T>, f: impl FnOnce(&mut T) -> R) -> R {
    f(&mut mutex.lock().unwrap_or_else(PoisonError::into_inner))
}

/// A fixed number of slots, with a first-come-first-served line of
/// callers waiting for one.
pub struct Slots {
    /// `in_use << 1 | WAITERS`.
    state: AtomicUsize,
    capacity: usize,
    line: Mutex<VecDeque<Arc<Waiter>>>,
}

/// The outcome of [`Slots::try_reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// A slot was taken; the caller must [`release`](Slots::release) it.
    Taken,
    /// The caller's shedding rule refused it at this depth.
    Shed,
    /// Every slot is in use, or callers are waiting for one.
    Busy,
}

/// One caller waiting for a slot, shared between the line and the caller.
pub struct Waiter {
    turn: Mutex<Turn>,
}

struct Turn {
    /// A slot was taken on this waiter's behalf; it now owns it.
    granted: bool,
    waker: Option<Waker>,
}

impl Slots {
    /// `capacity` slots, all free.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: AtomicUsize::new(0),
            capacity: capacity.min(usize::MAX >> 2),
            line: Mutex::new(VecDeque::new()),
        }
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Slots in use, including those granted to waiters that have not yet
    /// noticed.
    pub fn in_use(&self) -> usize {
        self.state.load(Acquire) >> 1
    }

    /// `true` when a newcomer would get a slot now: one is free and nobody
    /// waits.
    pub fn has_room(&self) -> bool {
        let state = self.state.load(Acquire);
        state & WAITERS == 0 && state >> 1 < self.capacity
    }

    /// Takes a slot if one is free and nobody waits, unless `shed`, asked
    /// with the slots in use, refuses the caller. One CAS loop; no lock.
    pub fn try_reserve(&self, mut shed: impl FnMut(usize) -> bool) -> Reserve {
        let mut cur = self.state.load(Acquire);
        loop {
            if shed(cur >> 1) {
                return Reserve::Shed;
            }
            if cur & WAITERS != 0 || cur >> 1 >= self.capacity {
                return Reserve::Busy;
            }
            match self
                .state
                .compare_exchange_weak(cur, cur + ONE, AcqRel, Acquire)
            {
                Ok(_) => return Reserve::Taken,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes a slot ignoring the line (for the front waiter, or when the
    /// line is empty), under the line's lock.
    fn take_locked(&self) -> bool {
        let mut cur = self.state.load(Acquire);
        while cur >> 1 < self.capacity {
            match self
                .state
                .compare_exchange_weak(cur, cur + ONE, AcqRel, Acquire)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
        false
    }

    /// The slow path: `Ok` with a slot taken if nobody waits and one is
    /// free, otherwise `Err` with the caller's place at the back of the
    /// line (poll it with [`Waiter::poll_granted`], withdraw it with
    /// [`cancel`](Self::cancel)).
    pub fn wait_turn(&self) -> Result<(), Arc<Waiter>> {
        let (result, wake) = with(&self.line, |line| {
            if line.is_empty() && self.take_locked() {
                return (Ok(()), None);
            }
            let waiter = Arc::new(Waiter {
                turn: Mutex::new(Turn {
                    granted: false,
                    waker: None,
                }),
            });
            line.push_back(waiter.clone());
            // From here on every release takes the lock and grants; a
            // release that came before is visible to the grant below.
            self.state.fetch_or(WAITERS, AcqRel);
            let wake = self.grant_locked(line);
            if with(&waiter.turn, |turn| turn.granted) {
                (Ok(()), wake)
            } else {
                (Err(waiter), wake)
            }
        });
        if let Some(waker) = wake {
            waker.wake();
        }
        result
    }

    /// Withdraws `waiter` from the line. `true` when it had been granted a
    /// slot already: the caller then owns it (use it, or
    /// [`release`](Self::release) it to pass it on).
    pub fn cancel(&self, waiter: &Arc<Waiter>) -> bool {
        let (granted, wake) = with(&self.line, |line| {
            // `granted` only changes under the line's lock, held here.
            if with(&waiter.turn, |turn| turn.granted) {
                return (true, None);
            }
            if let Some(pos) = line.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                line.remove(pos);
            }
            (false, self.grant_locked(line))
        });
        if let Some(waker) = wake {
            waker.wake();
        }
        granted
    }

    /// Returns one slot, handing it to the front waiter if any.
    pub fn release(&self) {
        let prev = self.state.fetch_sub(ONE, AcqRel);
        debug_assert!(prev >> 1 > 0, "released more slots than taken");
        if prev & WAITERS != 0 {
            let wake = with(&self.line, |line| self.grant_locked(line));
            if let Some(waker) = wake {
                waker.wake();
            }
        }
    }

    /// Hands a free slot to the front waiter, if both exist, and keeps the
    /// flag in step with the line. One slot at most: every release grants
    /// for itself, and a caller joining an empty line grants right after
    /// setting the flag, so a slot never stays free while someone waits.
    /// Returns the waker to wake once the lock is released.
    fn grant_locked(&self, line: &mut VecDeque<Arc<Waiter>>) -> Option<Waker> {
        let mut wake = None;
        if !line.is_empty()
            && self.take_locked()
            && let Some(waiter) = line.pop_front()
        {
            wake = with(&waiter.turn, |turn| {
                turn.granted = true;
                turn.waker.take()
            });
        }
        if line.is_empty() {
            self.state.fetch_and(!WAITERS, AcqRel);
        }
        wake
    }
}

impl fmt::Debug for Slots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slots")
            .field("capacity", &self.capacity)
            .field("in_use", &self.in_use())
            .field("waiting", &(self.state.load(Acquire) & WAITERS != 0))
            .finish()
    }
}

impl Waiter {
    /// `true` once a slot was granted to this waiter (it then owns it);
    /// otherwise remembers `waker` to be woken when that happens.
    pub fn poll_granted(&self, waker: &Waker) -> bool {
        with(&self.turn, |turn| {
            if turn.granted {
                return true;
            }
            match &mut turn.waker {
                Some(old) if old.will_wake(waker) => {}
                other => *other = Some(waker.clone()),
            }
            false
        })
    }
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("granted", &with(&self.turn, |turn| turn.granted))
            .finish()
    }
}

#[cfg(all(test, not(rampart_loom)))]
mod tests {
    use super::*;

    fn never(_: usize) -> bool {
        false
    }

    fn queued(slots: &Slots) -> Arc<Waiter> {
        match slots.wait_turn() {
            Ok(()) => panic!("expected to wait"),
            Err(w) => w,
        }
    }

    #[test]
    fn waiters_are_granted_in_order_and_newcomers_wait_behind_them() {
        let slots = Slots::new(1);
        assert_eq!(slots.try_reserve(never), Reserve::Taken);
        let first = queued(&slots);
        let second = queued(&slots);
        assert!(!slots.has_room());
        slots.release();
        assert!(first.poll_granted(Waker::noop()));
        assert!(!second.poll_granted(Waker::noop()));
        // The first waiter holds the slot; release it: the second gets it,
        // and a newcomer finds no room even in between.
        slots.release();
        assert_eq!(slots.try_reserve(never), Reserve::Busy);
        assert!(second.poll_granted(Waker::noop()));
        slots.release();
        assert_eq!(slots.in_use(), 0);
        assert!(slots.has_room());
    }

    #[test]
    fn a_free_slot_with_waiters_is_not_taken_by_the_fast_path() {
        let slots = Slots::new(2);
        assert_eq!(slots.try_reserve(never), Reserve::Taken);
        assert_eq!(slots.try_reserve(never), Reserve::Taken);
        let w = queued(&slots);
        assert_eq!(slots.try_reserve(never), Reserve::Busy);
        slots.release();
        assert!(w.poll_granted(Waker::noop()));
        assert_eq!(slots.in_use(), 2);
        slots.release();
        assert_eq!(slots.try_reserve(never), Reserve::Taken, "line empty again");
    }

    #[test]
    fn a_cancelled_waiter_passes_its_turn_on() {
        let slots = Slots::new(1);
        assert_eq!(slots.try_reserve(never), Reserve::Taken);
        let a = queued(&slots);
        let b = queued(&slots);
        let c = queued(&slots);
        assert!(!slots.cancel(&b), "b had nothing yet");
        slots.release();
        assert!(slots.cancel(&a), "a was granted before it gave up");
        slots.release(); // a passes the slot on, skipping the gone b
        assert!(c.poll_granted(Waker::noop()));
        slots.release();
        assert_eq!(slots.in_use(), 0);
        assert!(slots.has_room());
    }

    #[test]
    fn shed_is_asked_with_the_depth() {
        let slots = Slots::new(4);
        assert_eq!(slots.try_reserve(never), Reserve::Taken);
        let mut seen = Vec::new();
        let r = slots.try_reserve(|depth| {
            seen.push(depth);
            true
        });
        assert_eq!((r, seen), (Reserve::Shed, vec![1]));
    }
}

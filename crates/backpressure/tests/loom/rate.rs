//! Model checks of the GCRA rate limiter and the queue.
//!
//! The GCRA core runs on a fixed clock (every call at one instant), so the
//! burst is the exact bound on admissions; the queue's slot core runs with
//! loom's wakers, so a waiter nobody wakes is reported as a deadlock.

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;
use rampart_backpressure::queue::slots::{Reserve, Slots};
use rampart_backpressure::rate::gcra::{Gcra, Verdict};

// === GCRA ===

/// Every call happens at the limiter's first instant.
fn instant() -> u64 {
    0
}

/// One call without waiting; `1` when admitted.
fn acquire(gcra: &Gcra) -> usize {
    usize::from(gcra.acquire_at(None, &instant) == Verdict::Now)
}

/// Three callers at one instant, a burst of two: exactly two admitted,
/// whatever the interleaving of their CAS loops.
#[test]
fn concurrent_acquires_at_one_instant_never_exceed_the_burst() {
    loom::model(|| {
        let gcra = Arc::new(Gcra::new(Duration::from_nanos(10), 2));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let gcra = gcra.clone();
                thread::spawn(move || acquire(&gcra))
            })
            .collect();
        let mut admitted = acquire(&gcra);
        for t in threads {
            admitted += t.join().unwrap();
        }
        assert_eq!(admitted, 2);
    });
}

/// Two callers race a rate change (slower or faster) at one instant, then
/// a third and fourth come after: never more than the burst of two are
/// admitted, whichever rate each call was judged by.
fn rate_change_keeps_the_burst(from_nanos: u64, to_nanos: u64) {
    loom::model(move || {
        let gcra = Arc::new(Gcra::new(Duration::from_nanos(from_nanos), 2));
        let caller = {
            let gcra = gcra.clone();
            thread::spawn(move || acquire(&gcra))
        };
        let changer = {
            let gcra = gcra.clone();
            thread::spawn(move || {
                gcra.set_interval_at(Duration::from_nanos(to_nanos), &instant);
            })
        };
        let mut admitted = acquire(&gcra);
        admitted += caller.join().unwrap();
        changer.join().unwrap();
        admitted += acquire(&gcra) + acquire(&gcra);
        assert!(admitted <= 2, "{admitted} admitted with a burst of 2");
        assert_eq!(gcra.interval(), Duration::from_nanos(to_nanos));
    });
}

#[test]
fn slowing_down_while_callers_race_keeps_the_burst() {
    rate_change_keeps_the_burst(10, 1_000);
}

#[test]
fn speeding_up_while_callers_race_keeps_the_burst() {
    rate_change_keeps_the_burst(1_000, 10);
}

/// A reservation refunded while another caller acquires: the refund never
/// hands out more than the one token it gave back.
#[test]
fn a_refund_racing_an_acquire_returns_one_token() {
    loom::model(|| {
        let gcra = Arc::new(Gcra::new(Duration::from_nanos(10), 1));
        assert_eq!(acquire(&gcra), 1);
        let wait = Some(Duration::from_nanos(100));
        assert_eq!(
            gcra.acquire_at(wait, &instant),
            Verdict::After(Duration::from_nanos(10))
        );
        let caller = {
            let gcra = gcra.clone();
            thread::spawn(move || gcra.acquire_at(wait, &instant))
        };
        gcra.refund_at(&instant);
        // Whether the caller came before or after the refund, it waits for
        // the second slot: the refunded one, or its own.
        assert!(matches!(
            caller.join().unwrap(),
            Verdict::After(d) if d == Duration::from_nanos(10) || d == Duration::from_nanos(20)
        ));
        assert_eq!(acquire(&gcra), 0);
    });
}

// === queue slots ===

fn never(_: usize) -> bool {
    false
}

/// Takes a slot the way the queue does: the fast path, else a place in
/// line, parked (as loom sees it) until granted.
fn take(slots: &Slots) {
    if slots.try_reserve(never) == Reserve::Taken {
        return;
    }
    if let Err(waiter) = slots.wait_turn() {
        // loom reports a deadlock if no one ever grants this waiter
        loom::future::block_on(poll_fn(|cx| {
            if waiter.poll_granted(cx.waker()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
    }
}

/// Takes a slot, checks that no more than `capacity` holders are inside at
/// once, and gives it back.
fn hold(slots: &Slots, inside: &AtomicUsize, capacity: usize) {
    take(slots);
    let now = inside.fetch_add(1, SeqCst) + 1;
    assert!(
        now <= capacity,
        "{now} slots held with a capacity of {capacity}"
    );
    assert!(slots.in_use() <= capacity);
    inside.fetch_sub(1, SeqCst);
    slots.release();
}

/// Three callers, one slot: each gets it in turn (every waiter is woken),
/// never two at once, and every slot comes back.
#[test]
fn slots_never_exceed_capacity_and_all_come_back() {
    loom::model(|| {
        let slots = Arc::new(Slots::new(1));
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (slots, inside) = (slots.clone(), inside.clone());
                thread::spawn(move || hold(&slots, &inside, 1))
            })
            .collect();
        hold(&slots, &inside, 1);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(slots.in_use(), 0);
        assert!(slots.has_room(), "the line is empty again");
    });
}

/// A newcomer never takes the slot ahead of a waiter, even in the instant
/// between the release and the grant.
#[test]
fn a_newcomer_never_barges_past_a_waiter() {
    loom::model(|| {
        let slots = Arc::new(Slots::new(1));
        assert_eq!(slots.try_reserve(never), Reserve::Taken);
        let Err(waiter) = slots.wait_turn() else {
            panic!("the slot is taken: the caller waits");
        };
        let newcomer = {
            let slots = slots.clone();
            thread::spawn(move || slots.try_reserve(never))
        };
        slots.release();
        assert_eq!(newcomer.join().unwrap(), Reserve::Busy);
        assert!(slots.cancel(&waiter), "the waiter was granted the slot");
        slots.release();
        assert_eq!(slots.in_use(), 0);
    });
}

/// A waiter that gives up while the slot is being released passes any
/// slot it was granted on: the other waiter always gets one, and none
/// leaks.
#[test]
fn a_cancelled_waiter_passes_its_turn_on() {
    loom::model(|| {
        let slots = Arc::new(Slots::new(1));
        assert_eq!(slots.try_reserve(never), Reserve::Taken);
        let quitter = {
            let slots = slots.clone();
            thread::spawn(move || match slots.wait_turn() {
                Ok(()) => slots.release(),
                Err(waiter) => {
                    if slots.cancel(&waiter) {
                        slots.release();
                    }
                }
            })
        };
        let stayer = {
            let slots = slots.clone();
            thread::spawn(move || {
                take(&slots);
                slots.release();
            })
        };
        slots.release();
        quitter.join().unwrap();
        stayer.join().unwrap();
        assert_eq!(slots.in_use(), 0);
        assert!(slots.has_room());
    });
}

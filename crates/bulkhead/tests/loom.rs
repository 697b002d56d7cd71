//! Model checks of the lock-free permit core, over every interleaving loom
//! explores. Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg rampart_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
//!     cargo test -p rampart-bulkhead --release --test loom
//! ```
#![cfg(rampart_loom)]

use std::future::poll_fn;
use std::task::Poll;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;
use rampart_bulkhead::core::{Core, Entry};

/// Takes a permit the way the service does: the fast path, else the queue,
/// parking (as loom sees it) until granted. `false` when the queue is full.
fn acquire(core: &Core, max_queued: usize) -> bool {
    if core.try_acquire() {
        return true;
    }
    match core.acquire_or_enqueue(max_queued) {
        Entry::Admitted => true,
        Entry::QueueFull => false,
        Entry::Queued(waiter) => {
            // loom reports a deadlock if no one ever wakes this waiter
            loom::future::block_on(poll_fn(|cx| {
                if waiter.poll_granted(cx.waker()) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }));
            true
        }
    }
}

/// Takes a permit, checks that no more than `limit` holders are inside at
/// once, and returns it.
fn hold(core: &Core, active: &AtomicUsize, limit: usize, max_queued: usize) {
    if acquire(core, max_queued) {
        let inside = active.fetch_add(1, SeqCst) + 1;
        assert!(inside <= limit, "{inside} holders with a limit of {limit}");
        active.fetch_sub(1, SeqCst);
        core.release();
    }
}

/// Three callers, one permit, room for all to queue: every caller gets in
/// (so every waiter is woken), never two at once, and every permit comes
/// back.
#[test]
fn three_callers_one_permit_all_admitted_in_turn() {
    loom::model(|| {
        let core = Arc::new(Core::new(1));
        let active = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (core, active) = (core.clone(), active.clone());
                thread::spawn(move || hold(&core, &active, 1, 2))
            })
            .collect();
        hold(&core, &active, 1, 2);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(core.in_flight(), 0);
        assert_eq!(core.queued(), 0);
    });
}

/// Three callers, two permits, no queue: never more than two inside, and
/// the count returns to zero.
#[test]
fn fast_path_never_exceeds_the_limit() {
    loom::model(|| {
        let core = Arc::new(Core::new(2));
        let active = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (core, active) = (core.clone(), active.clone());
                thread::spawn(move || hold(&core, &active, 2, 0))
            })
            .collect();
        hold(&core, &active, 2, 0);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(core.in_flight(), 0);
    });
}

/// A waiter is woken when the permit holder releases.
#[test]
fn a_waiter_is_woken_by_a_release() {
    loom::model(|| {
        let core = Arc::new(Core::new(1));
        assert!(core.try_acquire());
        let waiter = {
            let core = core.clone();
            thread::spawn(move || {
                assert!(acquire(&core, 1));
                core.release();
            })
        };
        core.release();
        waiter.join().unwrap();
        assert_eq!(core.in_flight(), 0);
        assert_eq!(core.queued(), 0);
    });
}

/// A queued caller that gives up while the permit is being released passes
/// any permit it was granted to the next waiter: the other waiter is always
/// admitted.
#[test]
fn a_cancelled_waiter_passes_its_permit_on() {
    loom::model(|| {
        let core = Arc::new(Core::new(1));
        assert!(core.try_acquire());
        let quitter = {
            let core = core.clone();
            thread::spawn(move || match core.acquire_or_enqueue(2) {
                Entry::Queued(w) => {
                    if core.cancel(&w) {
                        core.release();
                    }
                }
                Entry::Admitted => core.release(),
                Entry::QueueFull => unreachable!("room for two"),
            })
        };
        let stayer = {
            let core = core.clone();
            thread::spawn(move || {
                assert!(acquire(&core, 2));
                core.release();
            })
        };
        core.release();
        quitter.join().unwrap();
        stayer.join().unwrap();
        assert_eq!(core.in_flight(), 0);
        assert_eq!(core.queued(), 0);
    });
}

/// Growing the limit admits a waiter while the first holder still holds.
#[test]
fn growing_the_limit_wakes_a_waiter() {
    loom::model(|| {
        let core = Arc::new(Core::new(1));
        assert!(core.try_acquire());
        let waiter = {
            let core = core.clone();
            thread::spawn(move || {
                assert!(acquire(&core, 1));
                core.release();
            })
        };
        core.set_limit(2);
        waiter.join().unwrap();
        assert_eq!(core.in_flight(), 1, "the first holder still holds");
        core.release();
        assert_eq!(core.in_flight(), 0);
    });
}

/// A newcomer never takes a permit ahead of a queued waiter, even in the
/// instant between a release and the grant to that waiter.
#[test]
fn a_newcomer_never_overtakes_a_waiter() {
    loom::model(|| {
        let core = Arc::new(Core::new(1));
        assert!(core.try_acquire());
        let Entry::Queued(waiter) = core.acquire_or_enqueue(1) else {
            panic!("the permit is taken: the caller queues");
        };
        let newcomer = {
            let core = core.clone();
            thread::spawn(move || core.try_acquire())
        };
        core.release();
        assert!(
            !newcomer.join().unwrap(),
            "the newcomer overtook the waiter"
        );
        assert!(core.cancel(&waiter), "the waiter was granted the permit");
        core.release();
        assert_eq!(core.in_flight(), 0);
    });
}

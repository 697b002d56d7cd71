//! Model checks of the adaptive concurrency limit's permit core: however
//! acquiring, queueing, cancelling, releasing and limit changes
//! interleave, no more calls than the limit are ever in flight, a freed
//! permit reaches a waiter (none waits behind a free permit), and every
//! permit comes back.

use std::task::Waker;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use rampart_backpressure::adaptive::core::{Core, Entry, SCALE, Waiter};

/// Calls holding a permit, as the callers count them.
struct Holders {
    now: AtomicUsize,
    /// The largest limit in force at any time.
    bound: usize,
}

impl Holders {
    fn new(bound: usize) -> Arc<Self> {
        Arc::new(Self {
            now: AtomicUsize::new(0),
            bound,
        })
    }

    /// Takes a permit the way the limiter does: the fast path, then the
    /// queue, waiting for the hand-off; holds it, then releases it.
    fn call(&self, core: &Core) {
        if core.try_acquire().is_none()
            && let Entry::Queued(waiter) = core.acquire_or_enqueue()
        {
            while !waiter.poll_granted(Waker::noop()) {
                thread::yield_now();
            }
        }
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(
            now <= self.bound,
            "{now} in flight over a limit of {}",
            self.bound
        );
        self.now.fetch_sub(1, Ordering::SeqCst);
        core.release();
    }
}

/// A core whose one permit is taken, a caller waiting in line for it, and
/// a thread releasing it.
fn waiter_behind_a_release() -> (Arc<Core>, std::sync::Arc<Waiter>, thread::JoinHandle<()>) {
    let core = Arc::new(Core::new(SCALE));
    core.try_acquire().expect("the first permit is free");
    let Entry::Queued(waiter) = core.acquire_or_enqueue() else {
        panic!("the limit is reached: the caller queues");
    };
    let releaser = {
        let core = core.clone();
        thread::spawn(move || core.release())
    };
    (core, waiter, releaser)
}

fn assert_drained(core: &Core) {
    assert_eq!(core.in_flight(), 0, "a permit leaked");
    assert_eq!(core.waiting(), 0, "a waiter was left behind");
    assert!(core.has_room());
}

#[test]
fn concurrent_calls_stay_within_the_limit_and_return_their_permits() {
    loom::model(|| {
        let core = Arc::new(Core::new(SCALE));
        let holders = Holders::new(1);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (core, holders) = (core.clone(), holders.clone());
                thread::spawn(move || holders.call(&core))
            })
            .collect();
        holders.call(&core);
        for t in threads {
            t.join().unwrap();
        }
        assert_drained(&core);
    });
}

#[test]
fn a_growing_limit_reaches_a_waiter_and_a_shrinking_one_is_obeyed() {
    loom::model(|| {
        let core = Arc::new(Core::new(SCALE));
        // The limit goes 1 → 2 → 1 while two calls run: never more than
        // 2 in flight, and a call queued behind the first is served by the
        // growth or by the first one's release.
        let holders = Holders::new(2);
        let caller = {
            let (core, holders) = (core.clone(), holders.clone());
            thread::spawn(move || holders.call(&core))
        };
        let changer = {
            let core = core.clone();
            thread::spawn(move || {
                core.update_limit(|_| Some(2 * SCALE));
                core.update_limit(|_| Some(SCALE));
            })
        };
        holders.call(&core);
        caller.join().unwrap();
        changer.join().unwrap();
        assert_drained(&core);
        assert_eq!(core.limit(), 1);
    });
}

#[test]
fn a_waiter_cancelled_during_a_release_passes_the_permit_on() {
    loom::model(|| {
        let (core, waiter, releaser) = waiter_behind_a_release();
        // The waiter gives up while the permit may be handed to it.
        if core.cancel(&waiter) {
            core.release();
        }
        releaser.join().unwrap();
        assert_drained(&core);
        assert_eq!(core.try_acquire(), Some(1), "the permit came back");
        core.release();
    });
}

#[test]
fn a_newcomer_does_not_take_a_permit_freed_for_a_waiter() {
    loom::model(|| {
        let (core, waiter, releaser) = waiter_behind_a_release();
        // However the newcomer interleaves with the release, it never
        // gets the permit while the earlier caller waits for it.
        let newcomer = core.try_acquire();
        releaser.join().unwrap();
        assert_eq!(newcomer, None, "the newcomer overtook the waiter");
        assert!(waiter.poll_granted(Waker::noop()));
        core.release();
        assert_drained(&core);
    });
}

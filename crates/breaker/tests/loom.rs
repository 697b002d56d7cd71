//! Model checks of the breaker's lock-free state machine.
//!
//! Run with `RUSTFLAGS="--cfg rampart_loom" cargo test --release --test loom`
//! (scripts/test.sh does, with a small preemption bound).
#![cfg(rampart_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use rampart_breaker::core::{Core, OpenPolicy, State, Thresholds, Verdict};
use rampart_breaker::window::{CountWindow, Window};

fn thresholds(half_open_calls: u32, consecutive_failures: u32) -> Thresholds {
    Thresholds {
        failure_rate: 0.5,
        slow_rate: 1.0,
        slow_nanos: 0,
        min_calls: 1,
        consecutive_failures,
        half_open_calls,
        half_open_success_ratio: 1.0,
        half_open_max_nanos: u64::MAX,
        open: OpenPolicy {
            base_nanos: 1_000,
            max_nanos: 1_000,
            multiplier: 1.0,
            jitter: 0.0,
        },
    }
}

fn core(half_open_calls: u32) -> Arc<Core> {
    Arc::new(Core::new(
        Window::Count(CountWindow::new(4)),
        &thresholds(half_open_calls, 0),
        1,
    ))
}

fn now() -> u64 {
    0
}

#[test]
fn half_open_admits_at_most_k() {
    loom::model(|| {
        let core = core(1);
        core.force(State::HalfOpen, 0, &mut |_| {});
        let admitted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let core = core.clone();
                let admitted = admitted.clone();
                thread::spawn(move || {
                    if let Ok(p) = core.acquire(&now, &mut |_| {}) {
                        assert!(p.is_trial());
                        admitted.fetch_add(1, Ordering::SeqCst);
                        // keep the slot: no outcome yet
                        std::mem::forget(p);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn exactly_one_transition_wins_a_race() {
    loom::model(|| {
        let core = Arc::new(Core::new(
            Window::Count(CountWindow::new(4)),
            &thresholds(1, 1),
            1,
        ));
        let transitions = Arc::new(AtomicUsize::new(0));
        // Both calls were admitted while closed; they fail at once.
        let permits: Vec<_> = (0..2)
            .map(|_| core.acquire(&now, &mut |_| {}).expect("closed admits"))
            .collect();
        let threads: Vec<_> = permits
            .into_iter()
            .map(|p| {
                let core = core.clone();
                let transitions = transitions.clone();
                thread::spawn(move || {
                    core.record(p, Verdict::Failure, false, &now, &mut |t| {
                        assert_eq!((t.from, t.to), (State::Closed, State::Open));
                        transitions.fetch_add(1, Ordering::SeqCst);
                    });
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(transitions.load(Ordering::SeqCst), 1);
        assert_eq!(core.state(), State::Open);
    });
}

#[test]
fn trial_outcomes_decide_once_and_release_slots() {
    loom::model(|| {
        let core = core(2);
        core.force(State::HalfOpen, 0, &mut |_| {});
        let closes = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = [Verdict::Success, Verdict::Ignored]
            .into_iter()
            .map(|verdict| {
                let core = core.clone();
                let closes = closes.clone();
                thread::spawn(move || {
                    if let Ok(p) = core.acquire(&now, &mut |_| {}) {
                        core.record(p, verdict, false, &now, &mut |t| {
                            assert_eq!(t.to, State::Closed);
                            closes.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // One success of the two needed: still half-open, and the ignored
        // call gave its slot back, so one more trial is admitted and closes.
        assert_eq!(core.state(), State::HalfOpen);
        assert_eq!(closes.load(Ordering::SeqCst), 0);
        let p = core.acquire(&now, &mut |_| {}).expect("a slot is free");
        core.record(p, Verdict::Success, false, &now, &mut |_| {
            closes.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(core.state(), State::Closed);
        assert_eq!(closes.load(Ordering::SeqCst), 1);
    });
}

//! The bounded queue's rules, driven with `tower_test::mock` on a paused
//! clock. The worker is a real Tokio task; `settle` lets it run.

use std::time::Duration;

use rampart_backpressure::{
    Admission, Overloaded, Queue, QueueClosed, QueueConfig, QueueHandle, Reason,
};
use rampart_core::BoxError;
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, Service};
use tower_test::{assert_request_eq, mock};

type MockHandle = mock::Handle<&'static str, &'static str>;
type Svc = Queue<&'static str, mock::future::ResponseFuture<&'static str>>;

const MS: Duration = Duration::from_millis(1);

fn setup(capacity: usize, admission: Admission) -> (mock::Spawn<Svc>, MockHandle, QueueHandle) {
    let layer = QueueConfig::new()
        .capacity(capacity)
        .admission(admission)
        .build()
        .unwrap();
    let (inner, handle) = mock::pair::<&'static str, &'static str>();
    let svc: Svc = layer.layer(inner);
    let queue = svc.handle();
    (mock::Spawn::new(svc), handle, queue)
}

/// Lets the worker task run until it blocks.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

fn overloaded(err: &BoxError) -> &Overloaded {
    err.downcast_ref::<Overloaded>()
        .unwrap_or_else(|| panic!("expected Overloaded, got {err:?}"))
}

#[tokio::test(start_paused = true)]
async fn fail_fast_rejects_when_full() {
    let (mut svc, mut inner, queue) = setup(2, Admission::FailFast);
    inner.allow(0);
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    settle().await;
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    assert_eq!(queue.depth(), 2);

    assert_ready_ok!(svc.poll_ready());
    let mut c = task::spawn(svc.call("c"));
    let err = assert_ready_err!(c.poll());
    assert_eq!(overloaded(&err).reason(), Reason::QueueFull);
    assert_eq!(overloaded(&err).retry_after(), None);
    assert_eq!(queue.rejected(), 1);

    // The inner service becomes ready: the queue drains into it.
    inner.allow(2);
    settle().await;
    assert_eq!(queue.depth(), 0);
    assert_request_eq!(inner, "a").send_response("A");
    assert_request_eq!(inner, "b").send_response("B");
    assert_eq!(assert_ready_ok!(a.poll()), "A");
    assert_eq!(assert_ready_ok!(b.poll()), "B");
}

#[tokio::test(start_paused = true)]
async fn inner_calls_run_concurrently() {
    let (mut svc, mut inner, _queue) = setup(4, Admission::FailFast);
    inner.allow(2);
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    settle().await;
    let (_, send_a) = inner.next_request().await.unwrap();
    let (_, send_b) = inner.next_request().await.unwrap();
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    send_b.send_response("B");
    assert_eq!(assert_ready_ok!(b.poll()), "B");
    send_a.send_response("A");
    assert_eq!(assert_ready_ok!(a.poll()), "A");
}

#[tokio::test(start_paused = true)]
async fn backpressure_is_pending_until_a_slot_frees() {
    let (mut svc, mut inner, queue) = setup(1, Admission::Backpressure);
    inner.allow(0);
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    settle().await;
    assert_pending!(svc.poll_ready());
    assert_eq!(queue.rejected(), 0);

    inner.allow(1);
    settle().await;
    assert!(svc.is_woken(), "woken when the worker took the call");
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_request_eq!(inner, "a").send_response("A");
    assert_eq!(assert_ready_ok!(a.poll()), "A");
    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "b").send_response("B");
    assert_eq!(assert_ready_ok!(b.poll()), "B");
}

#[tokio::test(start_paused = true)]
async fn wait_takes_a_slot_that_frees_in_time_and_fails_after_the_bound() {
    let (mut svc, mut inner, queue) = setup(1, Admission::Wait(100 * MS));
    inner.allow(0);
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    settle().await;

    // Full: b waits for a slot.
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_pending!(b.poll());
    advance(50 * MS).await;
    inner.allow(1);
    settle().await;
    assert!(b.is_woken());
    assert_pending!(b.poll()); // took the slot, now queued
    assert_eq!(queue.depth(), 1);

    // Full again: c waits 100 ms and gives up.
    assert_ready_ok!(svc.poll_ready());
    let mut c = task::spawn(svc.call("c"));
    assert_pending!(c.poll());
    advance(100 * MS).await;
    assert!(c.is_woken());
    let err = assert_ready_err!(c.poll());
    assert_eq!(overloaded(&err).reason(), Reason::QueueFull);
    assert_eq!(queue.rejected(), 1);

    assert_request_eq!(inner, "a").send_response("A");
    assert_eq!(assert_ready_ok!(a.poll()), "A");
    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "b").send_response("B");
    assert_eq!(assert_ready_ok!(b.poll()), "B");
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_is_skipped() {
    let (mut svc, mut inner, queue) = setup(4, Admission::FailFast);
    inner.allow(0);
    assert_ready_ok!(svc.poll_ready());
    let gone = svc.call("gone");
    assert_ready_ok!(svc.poll_ready());
    let mut kept = task::spawn(svc.call("kept"));
    settle().await;
    drop(gone);
    inner.allow(2);
    settle().await;
    assert_eq!(queue.depth(), 0);
    assert_request_eq!(inner, "kept").send_response("ok");
    assert_eq!(assert_ready_ok!(kept.poll()), "ok");
    // "gone" was with the worker, waiting for the inner service to get
    // ready, when its caller left: it never reached the inner service.
    assert!(inner.poll_request().is_pending());
}

#[tokio::test(start_paused = true)]
async fn inner_readiness_error_closes_the_queue() {
    let (mut svc, mut inner, _queue) = setup(4, Admission::FailFast);
    inner.allow(0);
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    settle().await;
    inner.send_error(std::io::Error::other("dead"));
    settle().await;
    let err = assert_ready_err!(a.poll());
    let closed = err
        .downcast_ref::<QueueClosed>()
        .unwrap_or_else(|| panic!("expected QueueClosed, got {err:?}"));
    assert_eq!(
        closed.to_string(),
        "queue closed: inner service failed: dead"
    );
    let err = assert_ready_err!(svc.poll_ready());
    assert!(err.is::<QueueClosed>());
}

#[tokio::test(start_paused = true)]
async fn clones_share_the_queue() {
    let (svc, mut inner, queue) = setup(1, Admission::FailFast);
    let mut svc = svc.into_inner();
    let mut other = svc.clone();
    inner.allow(0);
    let mut a = task::spawn(svc.call("a"));
    settle().await;
    let mut b = task::spawn(other.call("b"));
    assert!(assert_ready_err!(b.poll()).is::<Overloaded>());
    assert_eq!(queue.depth(), 1);
    assert_eq!(other.handle().depth(), 1);
    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "a").send_response("A");
    assert_eq!(assert_ready_ok!(a.poll()), "A");
}

#[tokio::test(start_paused = true)]
async fn backpressure_race_loser_waits_without_exceeding_capacity() {
    let (svc, mut inner, queue) = setup(1, Admission::Backpressure);
    let mut a = mock::Spawn::new(svc.get_ref().clone());
    let mut b = mock::Spawn::new(svc.into_inner());
    inner.allow(0);
    // Both see the free slot; only one gets it.
    assert_ready_ok!(a.poll_ready());
    assert_ready_ok!(b.poll_ready());
    let mut first = task::spawn(a.call("a"));
    let mut second = task::spawn(b.call("b"));
    settle().await;
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    assert_eq!(queue.depth(), 1, "never above capacity");
    assert_eq!(queue.rejected(), 0);

    inner.allow(1);
    settle().await;
    assert!(second.is_woken());
    assert_pending!(second.poll()); // took the freed slot
    assert_eq!(queue.depth(), 1);
    assert_request_eq!(inner, "a").send_response("A");
    assert_eq!(assert_ready_ok!(first.poll()), "A");
    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "b").send_response("B");
    assert_eq!(assert_ready_ok!(second.poll()), "B");
}

#[tokio::test(start_paused = true)]
async fn the_worker_ends_when_every_clone_is_dropped() {
    let (svc, mut inner, _queue) = setup(4, Admission::FailFast);
    let clone = svc.get_ref().clone();
    drop(svc);
    settle().await;
    drop(clone);
    // The worker dropped the inner service: the mock sees no more callers.
    assert!(inner.next_request().await.is_none());
}

#[test]
fn a_queue_whose_runtime_is_gone_is_closed() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (mut svc, _inner, _queue) = rt.block_on(async { setup(4, Admission::FailFast) });
    drop(rt);
    let err = assert_ready_err!(svc.poll_ready());
    let closed = err.downcast_ref::<QueueClosed>().unwrap();
    assert_eq!(closed.to_string(), "queue closed: worker stopped");
    let mut call = task::spawn(svc.call("late"));
    assert!(assert_ready_err!(call.poll()).is::<QueueClosed>());
}

// === first come, first served ===

/// A call, made through `svc`, that is left waiting for a slot.
fn waiting_call(
    svc: &mut mock::Spawn<Svc>,
    req: &'static str,
) -> task::Spawn<<Svc as Service<&'static str>>::Future> {
    assert_ready_ok!(svc.poll_ready());
    let mut call = task::spawn(svc.call(req));
    assert_pending!(call.poll());
    call
}

#[tokio::test(start_paused = true)]
async fn waiters_get_slots_in_arrival_order() {
    let (mut svc, mut inner, queue) = setup(1, Admission::Wait(Duration::from_secs(10)));
    inner.allow(0);
    let mut a = waiting_call(&mut svc, "a");
    settle().await;
    let mut b = waiting_call(&mut svc, "b");
    let mut c = waiting_call(&mut svc, "c");
    let mut d = waiting_call(&mut svc, "d");

    // Each freed slot goes to the earliest waiter, even when later ones
    // look first.
    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "a").send_response("A");
    assert!(b.is_woken());
    assert!(!c.is_woken() && !d.is_woken());
    assert_pending!(d.poll());
    assert_pending!(c.poll());
    assert_pending!(b.poll()); // b has the slot: queued
    assert_eq!(queue.depth(), 1);

    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "b").send_response("B");
    assert!(c.is_woken());
    assert!(!d.is_woken());
    assert_pending!(d.poll());
    assert_pending!(c.poll());

    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "c").send_response("C");
    assert_pending!(d.poll());
    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "d").send_response("D");
    for (call, expected) in [(&mut a, "A"), (&mut b, "B"), (&mut c, "C"), (&mut d, "D")] {
        assert_eq!(assert_ready_ok!(call.poll()), expected);
    }
    assert_eq!(queue.depth(), 0);
    assert_eq!(queue.rejected(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_does_not_barge_past_a_waiting_call() {
    let (mut svc, mut inner, queue) = setup(1, Admission::Wait(Duration::from_secs(10)));
    inner.allow(0);
    let mut a = waiting_call(&mut svc, "a");
    settle().await;
    let mut b = waiting_call(&mut svc, "b");
    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "a").send_response("A");
    // The freed slot is b's, though b has not looked yet: the newcomer
    // waits behind it.
    let mut c = waiting_call(&mut svc, "c");
    assert_eq!(queue.depth(), 1);
    assert_pending!(b.poll());
    inner.allow(2);
    settle().await;
    assert_request_eq!(inner, "b").send_response("B");
    assert!(c.is_woken());
    assert_pending!(c.poll());
    settle().await;
    assert_request_eq!(inner, "c").send_response("C");
    assert_eq!(assert_ready_ok!(a.poll()), "A");
    assert_eq!(assert_ready_ok!(b.poll()), "B");
    assert_eq!(assert_ready_ok!(c.poll()), "C");
}

/// Three clients of one backpressured queue of one slot, the first of
/// which has a call `"a"` queued (the inner service takes none yet).
async fn three_clients_and_a_full_queue() -> (
    [mock::Spawn<Svc>; 3],
    task::Spawn<<Svc as Service<&'static str>>::Future>,
    MockHandle,
    QueueHandle,
) {
    let (svc, mut inner, queue) = setup(1, Admission::Backpressure);
    let mut first = mock::Spawn::new(svc.get_ref().clone());
    let second = mock::Spawn::new(svc.get_ref().clone());
    let third = mock::Spawn::new(svc.into_inner());
    inner.allow(0);
    assert_ready_ok!(first.poll_ready());
    let a = task::spawn(first.call("a"));
    settle().await;
    ([first, second, third], a, inner, queue)
}

#[tokio::test(start_paused = true)]
async fn backpressure_serves_waiting_clients_in_order_without_barging() {
    let ([mut first, mut second, mut newcomer], mut a, mut inner, queue) =
        three_clients_and_a_full_queue().await;
    // Full: `second`, then `first` wait in line in `poll_ready`.
    assert_pending!(second.poll_ready());
    assert_pending!(first.poll_ready());

    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "a").send_response("A");
    assert!(second.is_woken());
    assert!(!first.is_woken());
    // The slot was granted to `second`: a newcomer joins the line behind
    // `first`.
    assert_pending!(newcomer.poll_ready());
    assert_pending!(first.poll_ready());
    assert_ready_ok!(second.poll_ready());
    let mut b = task::spawn(second.call("b"));
    assert_eq!(queue.depth(), 1, "never above capacity");

    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "b").send_response("B");
    assert!(first.is_woken());
    assert!(!newcomer.is_woken());
    assert_pending!(newcomer.poll_ready());
    assert_ready_ok!(first.poll_ready());
    let mut c = task::spawn(first.call("c"));
    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "c").send_response("C");
    assert!(newcomer.is_woken());
    assert_ready_ok!(newcomer.poll_ready());
    for (call, expected) in [(&mut a, "A"), (&mut b, "B"), (&mut c, "C")] {
        assert_eq!(assert_ready_ok!(call.poll()), expected);
    }
    assert_eq!(queue.rejected(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_passes_its_turn_on_and_leaks_no_slot() {
    let (mut svc, mut inner, queue) = setup(1, Admission::Wait(Duration::from_secs(10)));
    inner.allow(0);
    let mut a = waiting_call(&mut svc, "a");
    settle().await;
    let b = waiting_call(&mut svc, "b");
    let c = waiting_call(&mut svc, "c");
    let mut d = waiting_call(&mut svc, "d");
    // c leaves before its turn; b is granted the freed slot, then leaves
    // without using it: the slot goes on to d.
    drop(c);
    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "a").send_response("A");
    assert!(!d.is_woken());
    drop(b);
    assert!(d.is_woken());
    assert_eq!(queue.depth(), 1);
    assert_pending!(d.poll());
    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "d").send_response("D");
    assert_eq!(assert_ready_ok!(a.poll()), "A");
    assert_eq!(assert_ready_ok!(d.poll()), "D");
    assert_eq!(queue.depth(), 0, "every slot came back");
    // Only a and d reached the inner service.
    assert!(inner.poll_request().is_pending());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_backpressured_client_passes_its_turn_or_slot_on() {
    let ([mut last, mut gone_early, mut gone_late], mut a, mut inner, queue) =
        three_clients_and_a_full_queue().await;
    assert_pending!(gone_early.poll_ready());
    assert_pending!(gone_late.poll_ready());
    assert_pending!(last.poll_ready());
    drop(gone_early); // leaves the line
    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "a").send_response("A");
    assert_ready_ok!(gone_late.poll_ready()); // granted, then never calls
    assert!(!last.is_woken());
    drop(gone_late);
    assert!(last.is_woken());
    assert_ready_ok!(last.poll_ready());
    let mut b = task::spawn(last.call("b"));
    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, "b").send_response("B");
    assert_eq!(assert_ready_ok!(a.poll()), "A");
    assert_eq!(assert_ready_ok!(b.poll()), "B");
    assert_eq!(queue.depth(), 0);
}

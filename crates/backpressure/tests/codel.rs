//! CoDel-style shedding on queueing delay, on a paused clock.

use std::time::Duration;

use rampart_backpressure::{Admission, Overloaded, Queue, QueueConfig, QueueHandle, Reason};
use rampart_core::BoxError;
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, Service};
use tower_test::{assert_request_eq, mock};

type MockHandle = mock::Handle<u32, u32>;
type Svc = Queue<u32, mock::future::ResponseFuture<u32>>;
type Call = task::Spawn<<Svc as Service<u32>>::Future>;

const MS: Duration = Duration::from_millis(1);

fn setup(config: QueueConfig) -> (mock::Spawn<Svc>, MockHandle, QueueHandle) {
    let (inner, handle) = mock::pair::<u32, u32>();
    let svc: Svc = config.build().unwrap().layer(inner);
    let queue = svc.handle();
    (mock::Spawn::new(svc), handle, queue)
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

fn send(svc: &mut mock::Spawn<Svc>, req: u32) -> Call {
    assert_ready_ok!(svc.poll_ready());
    let mut call = task::spawn(svc.call(req));
    assert_pending!(call.poll());
    call
}

fn is_shed(err: &BoxError) -> bool {
    err.downcast_ref::<Overloaded>()
        .is_some_and(|e| e.reason() == Reason::Shed && e.retry_after().is_none())
}

fn codel_queue() -> QueueConfig {
    QueueConfig::new()
        .capacity(100)
        .admission(Admission::FailFast)
        .codel(10 * MS, 100 * MS)
}

/// Builds a standing queue: ten calls queued at t=0, the inner service
/// takes the first at t=20ms (sojourn 20ms > target: the window's minimum)
/// and the next at t=130ms, after the window ended.
async fn standing_queue(svc: &mut mock::Spawn<Svc>, inner: &mut MockHandle) -> Vec<Call> {
    inner.allow(0);
    let mut calls: Vec<_> = (0..10).map(|i| send(svc, i)).collect();
    settle().await;
    advance(20 * MS).await;
    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, 0).send_response(0);
    assert_eq!(assert_ready_ok!(calls[0].poll()), 0);
    advance(110 * MS).await;
    inner.allow(1);
    settle().await;
    drop(calls.remove(0));
    calls
}

#[tokio::test(start_paused = true)]
async fn sheds_a_standing_queue_then_recovers() {
    let (mut svc, mut inner, queue) = setup(codel_queue());
    let mut rest = standing_queue(&mut svc, &mut inner).await;

    // The window's minimum sojourn was 20ms > 10ms: everything that waited
    // longer than the target is shed, without reaching the inner service.
    for call in &mut rest {
        assert!(is_shed(&assert_ready_err!(call.poll())));
    }
    assert_eq!(queue.shed(), 9);
    assert_eq!(queue.depth(), 0);

    // A fresh call has not waited: it goes through (the inner service is
    // still ready from the allowance the shed calls did not use).
    let mut fresh = send(&mut svc, 100);
    settle().await;
    assert_request_eq!(inner, 100).send_response(100);
    assert_eq!(assert_ready_ok!(fresh.poll()), 100);

    // The queue drained, so the next window ends shedding: a call that
    // waits long (but alone) is served.
    advance(200 * MS).await;
    inner.allow(0);
    let mut slow = send(&mut svc, 101);
    settle().await;
    advance(50 * MS).await;
    inner.allow(1);
    settle().await;
    assert_request_eq!(inner, 101).send_response(101);
    assert_eq!(assert_ready_ok!(slow.poll()), 101);
    assert_eq!(queue.shed(), 9);
}

#[tokio::test(start_paused = true)]
async fn without_codel_a_standing_queue_is_served() {
    let config = QueueConfig::new().capacity(100);
    let (mut svc, mut inner, queue) = setup(config);
    let mut rest = standing_queue(&mut svc, &mut inner).await;
    inner.allow(100);
    settle().await;
    for (i, call) in rest.iter_mut().enumerate() {
        let i = i as u32 + 1;
        assert_request_eq!(inner, i).send_response(i);
        assert_eq!(assert_ready_ok!(call.poll()), i);
    }
    assert_eq!(queue.shed(), 0);
}

#[tokio::test(start_paused = true)]
async fn short_delays_never_shed() {
    let (mut svc, mut inner, queue) = setup(codel_queue());
    inner.allow(1000);
    for i in 0..50 {
        let mut call = send(&mut svc, i);
        settle().await;
        advance(5 * MS).await;
        assert_request_eq!(inner, i).send_response(i);
        assert_eq!(assert_ready_ok!(call.poll()), i);
    }
    assert_eq!(queue.shed(), 0);
}

#[test]
fn codel_values_are_validated() {
    let cases = [
        (
            QueueConfig::new().codel(Duration::ZERO, 100 * MS),
            "codel.target",
        ),
        (
            QueueConfig::new().codel(5 * MS, Duration::ZERO),
            "codel.interval",
        ),
        (QueueConfig::new().codel(100 * MS, 100 * MS), "codel.target"),
    ];
    for (config, field) in cases {
        assert_eq!(config.validate().unwrap_err().field(), field);
    }
    let err = toml::from_str::<QueueConfig>("codel = { target = \"5ms\", intervall = \"1s\" }")
        .unwrap_err();
    assert!(err.to_string().contains("intervall"), "{err}");
}

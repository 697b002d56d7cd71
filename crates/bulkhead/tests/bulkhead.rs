//! The bulkhead's rules, driven with `tower_test::mock` on a paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use rampart_bulkhead::{BulkheadConfig, BulkheadFull, BulkheadLayer, Handle};
use rampart_core::BoxError;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt};
use tower_test::{assert_request_eq, mock};

type Mock = mock::Mock<&'static str, &'static str>;
type MockHandle = mock::Handle<&'static str, &'static str>;

fn layer(max_concurrent: usize, max_wait_ms: u64, max_queued: usize) -> BulkheadLayer {
    BulkheadConfig::default()
        .max_concurrent(max_concurrent)
        .max_wait(Duration::from_millis(max_wait_ms))
        .max_queued(max_queued)
        .build()
        .unwrap()
}

fn full(err: &BoxError) -> &BulkheadFull {
    err.downcast_ref::<BulkheadFull>()
        .unwrap_or_else(|| panic!("expected BulkheadFull, got {err:?}"))
}

/// Applies `layer` to a fresh mock; returns the service, the mock's handle
/// and the bulkhead's handle.
fn setup(
    layer: BulkheadLayer,
) -> (
    mock::Spawn<rampart_bulkhead::Bulkhead<Mock>>,
    MockHandle,
    Handle,
) {
    let handle = layer.handle();
    let (svc, inner) = mock::spawn_layer(layer);
    (svc, inner, handle)
}

#[tokio::test(start_paused = true)]
async fn admits_up_to_the_limit_then_rejects_at_once() {
    let (mut svc, mut inner, h) = setup(layer(2, 0, 0));

    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_eq!(h.in_flight(), 2);

    assert_ready_ok!(svc.poll_ready());
    let mut c = task::spawn(svc.call("c"));
    let err = assert_ready_err!(c.poll());
    let e = full(&err);
    assert_eq!(e.max_concurrent(), 2);
    assert_eq!(e.waited(), Duration::ZERO);
    assert_eq!(err.to_string(), "bulkhead full: 2 calls in flight");

    assert_request_eq!(inner, "a").send_response("A");
    assert_request_eq!(inner, "b").send_response("B");
    assert_eq!(assert_ready_ok!(a.poll()), "A");
    assert_eq!(assert_ready_ok!(b.poll()), "B");
    // "c" never reached the inner service
    assert_pending!(inner.poll_request());
    assert_eq!((h.in_flight(), h.rejected()), (0, 1));

    // capacity is back
    assert_ready_ok!(svc.poll_ready());
    let mut d = task::spawn(svc.call("d"));
    assert_request_eq!(inner, "d").send_response("D");
    assert_eq!(assert_ready_ok!(d.poll()), "D");
}

#[tokio::test(start_paused = true)]
async fn poll_ready_takes_no_permit_and_forwards_inner_readiness() {
    let (mut svc, mut inner, h) = setup(layer(1, 0, 0));
    let mut clients: Vec<_> = (0..3).map(|_| svc.clone()).collect();
    for client in &mut clients {
        assert_ready_ok!(client.poll_ready());
    }
    // three clients are ready, and idle: nothing is held
    assert_eq!(h.in_flight(), 0);
    assert_eq!(h.available(), 1);

    let mut a = task::spawn(clients[2].call("a"));
    assert_eq!(h.in_flight(), 1);
    assert_request_eq!(inner, "a").send_response("A");
    assert_ready_ok!(a.poll());

    // readiness is the inner service's
    inner.allow(0);
    assert_pending!(svc.poll_ready());
    inner.allow(1);
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());
}

#[tokio::test(start_paused = true)]
async fn max_wait_expires_into_bulkhead_full() {
    let (mut svc, mut inner, h) = setup(layer(1, 100, 4));
    assert_ready_ok!(svc.poll_ready());
    let _a = task::spawn(svc.call("a"));
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_pending!(b.poll());
    assert_eq!(h.queued(), 1);

    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(!b.is_woken());
    assert_pending!(b.poll());

    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(b.is_woken());
    let err = assert_ready_err!(b.poll());
    assert_eq!(full(&err).waited(), Duration::from_millis(100));
    assert_eq!(
        err.to_string(),
        "bulkhead full: 1 call in flight, waited 100ms"
    );
    assert_eq!((h.queued(), h.in_flight(), h.rejected()), (0, 1, 1));

    assert_request_eq!(inner, "a");
    assert_pending!(inner.poll_request(), "b never reached the inner service");
}

#[tokio::test(start_paused = true)]
async fn queued_call_is_admitted_when_a_permit_is_released() {
    let (mut svc, mut inner, h) = setup(layer(1, 1_000, 4));
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_pending!(b.poll());
    let a_req = assert_request_eq!(inner, "a");
    assert_pending!(inner.poll_request(), "b waits for a permit");

    tokio::time::advance(Duration::from_millis(300)).await;
    a_req.send_response("A");
    assert_eq!(assert_ready_ok!(a.poll()), "A");
    assert!(b.is_woken(), "releasing a's permit wakes b");
    assert_pending!(b.poll());
    assert_eq!((h.queued(), h.in_flight()), (0, 1));

    assert_request_eq!(inner, "b").send_response("B");
    assert_eq!(assert_ready_ok!(b.poll()), "B");
    assert_eq!((h.in_flight(), h.rejected()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn queued_calls_are_admitted_in_arrival_order() {
    let (mut svc, mut inner, _h) = setup(layer(1, 1_000, 4));
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_ready_ok!(svc.poll_ready());
    let mut c = task::spawn(svc.call("c"));
    assert_pending!(b.poll());
    assert_pending!(c.poll());

    assert_request_eq!(inner, "a").send_response("A");
    assert_ready_ok!(a.poll());
    assert!(b.is_woken());
    assert!(!c.is_woken());
    assert_pending!(c.poll());
    assert_pending!(b.poll());
    assert_request_eq!(inner, "b").send_response("B");
    assert_ready_ok!(b.poll());
    assert!(c.is_woken());
    assert_pending!(c.poll());
    assert_request_eq!(inner, "c").send_response("C");
    assert_ready_ok!(c.poll());
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_rejects_at_once() {
    let (mut svc, _inner, h) = setup(layer(1, 1_000, 1));
    assert_ready_ok!(svc.poll_ready());
    let _a = task::spawn(svc.call("a"));
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_pending!(b.poll());

    assert_ready_ok!(svc.poll_ready());
    let mut c = task::spawn(svc.call("c"));
    let err = assert_ready_err!(c.poll());
    assert_eq!(full(&err).waited(), Duration::ZERO);
    assert_eq!((h.queued(), h.rejected()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_waiting_call_frees_its_queue_slot() {
    let (mut svc, mut inner, h) = setup(layer(1, 1_000, 1));
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_pending!(b.poll());
    assert_eq!(h.queued(), 1);

    drop(b);
    assert_eq!(h.queued(), 0);
    // the slot is free again: c queues instead of being rejected
    assert_ready_ok!(svc.poll_ready());
    let mut c = task::spawn(svc.call("c"));
    assert_pending!(c.poll());

    assert_request_eq!(inner, "a").send_response("A");
    assert_ready_ok!(a.poll());
    assert_pending!(c.poll());
    assert_request_eq!(inner, "c").send_response("C");
    assert_eq!(assert_ready_ok!(c.poll()), "C");
    assert_eq!((h.in_flight(), h.rejected()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_call_in_flight_releases_its_permit() {
    let (mut svc, mut inner, h) = setup(layer(1, 0, 0));
    assert_ready_ok!(svc.poll_ready());
    let a = task::spawn(svc.call("a"));
    let _a_req = assert_request_eq!(inner, "a");
    assert_eq!(h.in_flight(), 1);

    drop(a);
    assert_eq!(h.in_flight(), 0);
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_request_eq!(inner, "b").send_response("B");
    assert_eq!(assert_ready_ok!(b.poll()), "B");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_passes_its_wake_up_on() {
    let (mut svc, mut inner, h) = setup(layer(1, 1_000, 2));
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_ready_ok!(svc.poll_ready());
    let mut c = task::spawn(svc.call("c"));
    assert_pending!(b.poll());
    assert_pending!(c.poll());

    assert_request_eq!(inner, "a").send_response("A");
    assert_ready_ok!(a.poll());
    // b was granted the permit and woken, but is dropped before it runs
    assert!(b.is_woken());
    drop(b);
    assert!(c.is_woken(), "the permit passed on to c");
    assert_pending!(c.poll());
    assert_request_eq!(inner, "c").send_response("C");
    assert_eq!(assert_ready_ok!(c.poll()), "C");
    assert_eq!((h.in_flight(), h.queued()), (0, 0));
}

#[derive(Debug, PartialEq)]
struct Boom;

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}

impl std::error::Error for Boom {}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_and_release_the_permit() {
    let (mut svc, mut inner, h) = setup(layer(1, 0, 0));
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    assert_request_eq!(inner, "a").send_error(Boom);
    let err = assert_ready_err!(a.poll());
    assert_eq!(err.downcast_ref::<Boom>(), Some(&Boom));
    assert_eq!(h.in_flight(), 0);

    // an error from the inner service's readiness passes through too
    inner.send_error(Boom);
    let err = assert_ready_err!(svc.poll_ready());
    assert_eq!(err.downcast_ref::<Boom>(), Some(&Boom));
}

#[tokio::test]
async fn a_panicking_inner_future_releases_the_permit() {
    let layer = layer(1, 0, 0);
    let h = layer.handle();
    let mut svc = layer.layer(tower::service_fn(|_: ()| async {
        let fail = true;
        if fail {
            panic!("inner future panicked");
        }
        Ok::<(), BoxError>(())
    }));
    let fut = svc.ready().await.unwrap().call(());
    // the permit was taken when the call started
    assert_eq!(h.in_flight(), 1);
    let err = tokio::spawn(fut).await.unwrap_err();
    assert!(err.is_panic());
    assert_eq!(h.in_flight(), 0);
}

/// A service whose `call` itself panics.
#[derive(Clone)]
struct PanicOnCall;

impl Service<()> for PanicOnCall {
    type Response = ();
    type Error = BoxError;
    type Future = std::future::Ready<Result<(), BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: ()) -> Self::Future {
        panic!("call panicked")
    }
}

#[tokio::test]
async fn a_panicking_call_releases_the_permit() {
    let layer = layer(1, 0, 0);
    let h = layer.handle();
    let mut svc = layer.layer(PanicOnCall);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(svc.call(()));
    }));
    assert!(caught.is_err());
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn growing_the_limit_admits_waiters() {
    let (mut svc, mut inner, h) = setup(layer(1, 1_000, 4));
    assert_ready_ok!(svc.poll_ready());
    let _a = task::spawn(svc.call("a"));
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_ready_ok!(svc.poll_ready());
    let mut c = task::spawn(svc.call("c"));
    assert_ready_ok!(svc.poll_ready());
    let mut d = task::spawn(svc.call("d"));
    for f in [&mut b, &mut c, &mut d] {
        assert_pending!(f.poll());
    }

    h.set_max_concurrent(3).unwrap();
    assert!(b.is_woken() && c.is_woken());
    assert!(!d.is_woken(), "only two permits were added");
    assert_pending!(b.poll());
    assert_pending!(c.poll());
    assert_eq!((h.in_flight(), h.queued(), h.max_concurrent()), (3, 1, 3));
    assert_request_eq!(inner, "a");
    assert_request_eq!(inner, "b");
    assert_request_eq!(inner, "c");
    assert_pending!(inner.poll_request());
}

#[tokio::test(start_paused = true)]
async fn shrinking_the_limit_never_revokes_calls_in_flight() {
    let (mut svc, mut inner, h) = setup(layer(3, 0, 0));
    let mut calls = Vec::new();
    for req in ["a", "b", "c"] {
        assert_ready_ok!(svc.poll_ready());
        calls.push(task::spawn(svc.call(req)));
    }
    let mut responses = Vec::new();
    for req in ["a", "b", "c"] {
        responses.push(assert_request_eq!(inner, req));
    }

    h.set_max_concurrent(1).unwrap();
    assert_eq!((h.in_flight(), h.available()), (3, 0));
    assert!(h.set_max_concurrent(0).is_err());

    // the calls in flight go on; two complete
    let c_resp = responses.pop().unwrap();
    for (call, resp) in calls.iter_mut().zip(responses) {
        resp.send_response("ok");
        assert_ready_ok!(call.poll());
    }
    // one is still in flight: at the new limit, so a new call is rejected
    assert_ready_ok!(svc.poll_ready());
    let mut d = task::spawn(svc.call("d"));
    assert_ready_err!(d.poll());

    c_resp.send_response("ok");
    assert_ready_ok!(calls[2].poll());
    assert_eq!(h.in_flight(), 0);
    assert_ready_ok!(svc.poll_ready());
    let _e = task::spawn(svc.call("e"));
    assert_ready_ok!(svc.poll_ready());
    let mut f = task::spawn(svc.call("f"));
    assert_ready_err!(f.poll());
}

#[tokio::test(start_paused = true)]
async fn services_from_one_layer_share_the_bulkhead() {
    let layer = layer(1, 0, 0);
    let h = layer.handle();
    let (m1, _h1) = mock::pair::<&'static str, &'static str>();
    let (m2, _h2) = mock::pair::<&'static str, &'static str>();
    let mut s1 = mock::Spawn::new(layer.layer(m1));
    let mut s2 = mock::Spawn::new(layer.clone().layer(m2));
    assert_ready_ok!(s1.poll_ready());
    let _a = task::spawn(s1.call("a"));
    assert_ready_ok!(s2.poll_ready());
    let mut b = task::spawn(s2.call("b"));
    assert_ready_err!(b.poll());
    assert_eq!(s2.get_ref().handle().rejected(), 1);
    assert_eq!(h.snapshot().in_flight, 1);
}

/// Counts its clones, to see when the bulkhead moves the readied service.
#[derive(Debug)]
struct CountClones<S> {
    inner: S,
    clones: Arc<AtomicUsize>,
}

impl<S: Clone> Clone for CountClones<S> {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Self {
            inner: self.inner.clone(),
            clones: self.clones.clone(),
        }
    }
}

impl<S: Service<R>, R> Service<R> for CountClones<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.inner.call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn only_a_waiting_call_takes_the_readied_service_along() {
    let clones = Arc::new(AtomicUsize::new(0));
    let (svc, mut inner) = mock::spawn_with(|mock: Mock| {
        layer(1, 1_000, 1).layer(CountClones {
            inner: mock,
            clones: clones.clone(),
        })
    });
    let mut svc = svc;
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    assert_eq!(
        clones.load(Ordering::SeqCst),
        0,
        "a permit was free: no clone"
    );

    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_eq!(
        clones.load(Ordering::SeqCst),
        1,
        "b waits with the readied service"
    );
    assert_pending!(b.poll());
    // the clone left behind is not ready yet: the mock would panic if it
    // were called without `poll_ready`
    assert_ready_ok!(svc.poll_ready());

    assert_request_eq!(inner, "a").send_response("A");
    assert_ready_ok!(a.poll());
    assert_pending!(b.poll());
    assert_request_eq!(inner, "b").send_response("B");
    assert_eq!(assert_ready_ok!(b.poll()), "B");
}

#[tokio::test(start_paused = true)]
async fn a_permit_granted_as_the_wait_expires_is_used() {
    let (mut svc, mut inner, h) = setup(layer(1, 100, 1));
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_pending!(b.poll());

    // the permit comes free at the same instant as the deadline
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_request_eq!(inner, "a").send_response("A");
    assert_ready_ok!(a.poll());
    assert_pending!(b.poll());
    assert_request_eq!(inner, "b").send_response("B");
    assert_eq!(assert_ready_ok!(b.poll()), "B");
    assert_eq!((h.rejected(), h.in_flight()), (0, 0));
}

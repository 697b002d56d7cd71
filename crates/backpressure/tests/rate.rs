//! The rate limiter's rules, driven with `tower_test::mock` on a paused
//! clock.

use std::time::Duration;

use rampart_backpressure::{Admission, Handle, Overloaded, RateLimit, RateLimitConfig, Reason};
use rampart_core::BoxError;
use tokio::time::{Instant, advance};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, ServiceExt};
use tower_test::{assert_request_eq, mock};

type Mock = mock::Mock<&'static str, &'static str>;
type MockHandle = mock::Handle<&'static str, &'static str>;

const MS: Duration = Duration::from_millis(1);

fn config(rate: u32, period_ms: u64, burst: u32, admission: Admission) -> RateLimitConfig {
    RateLimitConfig::new()
        .rate(rate, Duration::from_millis(period_ms))
        .burst(burst)
        .admission(admission)
}

fn setup(config: RateLimitConfig) -> (mock::Spawn<RateLimit<Mock>>, MockHandle, Handle) {
    let layer = config.build().unwrap();
    let handle = layer.handle();
    let (svc, inner) = mock::spawn_layer(layer);
    (svc, inner, handle)
}

fn overloaded(err: &BoxError) -> &Overloaded {
    err.downcast_ref::<Overloaded>()
        .unwrap_or_else(|| panic!("expected Overloaded, got {err:?}"))
}

/// Calls the service once, answering the inner request; `Ok` or the error.
async fn call_once(
    svc: &mut mock::Spawn<RateLimit<Mock>>,
    inner: &mut MockHandle,
) -> Result<&'static str, BoxError> {
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call("req"));
    match fut.poll() {
        std::task::Poll::Ready(Err(e)) => Err(e),
        std::task::Poll::Ready(Ok(_)) => panic!("answered before the inner call"),
        std::task::Poll::Pending => {
            assert_request_eq!(inner, "req").send_response("ok");
            fut.await
        }
    }
}

#[tokio::test(start_paused = true)]
async fn fail_fast_spaces_calls_exactly() {
    // 10 per second, no burst: one call every 100 ms.
    let (mut svc, mut inner, h) = setup(config(10, 1000, 1, Admission::FailFast));
    inner.allow(100);
    assert_eq!(call_once(&mut svc, &mut inner).await.unwrap(), "ok");

    let err = call_once(&mut svc, &mut inner).await.unwrap_err();
    let e = overloaded(&err);
    assert_eq!(e.reason(), Reason::RateLimited);
    assert_eq!(e.retry_after(), Some(100 * MS));

    advance(99 * MS).await;
    let err = call_once(&mut svc, &mut inner).await.unwrap_err();
    assert_eq!(overloaded(&err).retry_after(), Some(MS));

    advance(MS).await;
    assert!(call_once(&mut svc, &mut inner).await.is_ok());
    assert_eq!((h.admitted(), h.rejected()), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn burst_then_even_spacing() {
    let (mut svc, mut inner, h) = setup(config(10, 1000, 5, Admission::FailFast));
    inner.allow(100);
    for _ in 0..5 {
        assert!(call_once(&mut svc, &mut inner).await.is_ok());
    }
    let err = call_once(&mut svc, &mut inner).await.unwrap_err();
    assert_eq!(overloaded(&err).retry_after(), Some(100 * MS));

    // A quiet spell refills the burst, but never above it.
    advance(Duration::from_secs(10)).await;
    for _ in 0..5 {
        assert!(call_once(&mut svc, &mut inner).await.is_ok());
    }
    assert!(call_once(&mut svc, &mut inner).await.is_err());
    assert_eq!(h.admitted(), 10);
    assert_eq!(h.burst(), 5);
}

#[tokio::test(start_paused = true)]
async fn clones_and_services_share_one_limiter() {
    let layer = config(1, 1000, 1, Admission::FailFast).build().unwrap();
    let (mut a, mut inner_a) = mock::spawn_with(|m: Mock| layer.layer(m));
    let (mut b, mut inner_b) = mock::spawn_with(|m: Mock| layer.clone().layer(m));
    inner_a.allow(10);
    inner_b.allow(10);
    assert!(call_once(&mut a, &mut inner_a).await.is_ok());
    assert!(call_once(&mut b, &mut inner_b).await.is_err());
    assert_eq!(layer.handle().admitted(), 1);
    assert_eq!(layer.handle().rejected(), 1);
}

#[tokio::test(start_paused = true)]
async fn backpressure_wakes_exactly_when_the_next_token_is_due() {
    let (mut svc, mut inner, h) = setup(config(4, 1000, 1, Admission::Backpressure));
    inner.allow(10);
    assert!(call_once(&mut svc, &mut inner).await.is_ok());

    // No token for 250 ms: not ready, and nothing taken by waiting.
    assert_pending!(svc.poll_ready());
    assert_eq!(h.wait_time(), 250 * MS);
    advance(249 * MS).await;
    assert!(!svc.is_woken());
    assert_pending!(svc.poll_ready());
    advance(MS).await;
    assert!(svc.is_woken(), "woken when the token is due");
    assert!(call_once(&mut svc, &mut inner).await.is_ok());
    assert_eq!(h.rejected(), 0);
}

#[tokio::test(start_paused = true)]
async fn backpressure_never_rejects_a_call_that_lost_the_race() {
    let layer = config(1, 1000, 1, Admission::Backpressure).build().unwrap();
    let (mut a, mut inner_a) = mock::spawn_with(|m: Mock| layer.layer(m));
    let (mut b, mut inner_b) = mock::spawn_with(|m: Mock| layer.layer(m));
    inner_a.allow(10);
    inner_b.allow(10);
    // Both see the token, only one gets it; the other waits for its slot.
    assert_ready_ok!(a.poll_ready());
    assert_ready_ok!(b.poll_ready());
    let mut fa = task::spawn(a.call("a"));
    let mut fb = task::spawn(b.call("b"));
    assert_pending!(fa.poll());
    assert_request_eq!(inner_a, "a").send_response("ok");
    assert_ready_ok!(fa.poll());
    assert_pending!(fb.poll());
    advance(999 * MS).await;
    assert_pending!(fb.poll());
    assert!(inner_b.poll_request().is_pending());
    advance(MS).await;
    assert!(fb.is_woken());
    assert_pending!(fb.poll());
    assert_request_eq!(inner_b, "b").send_response("ok");
    assert_ready_ok!(fb.poll());
}

#[tokio::test(start_paused = true)]
async fn wait_admits_within_the_bound_and_rejects_beyond_it() {
    let (mut svc, mut inner, h) = setup(config(10, 1000, 1, Admission::Wait(150 * MS)));
    inner.allow(10);
    assert!(call_once(&mut svc, &mut inner).await.is_ok());

    // Next slot at 100 ms: within 150 ms, so it waits for it.
    let start = Instant::now();
    assert_ready_ok!(svc.poll_ready());
    let mut second = task::spawn(svc.call("second"));
    assert_pending!(second.poll());
    assert_eq!(second.remaining_wait(), 100 * MS);

    // The slot after is at 200 ms: beyond 150 ms, rejected at once.
    assert_ready_ok!(svc.poll_ready());
    let mut third = task::spawn(svc.call("third"));
    let err = assert_ready_err!(third.poll());
    assert_eq!(overloaded(&err).retry_after(), Some(200 * MS));

    advance(100 * MS).await;
    assert!(second.is_woken());
    assert_pending!(second.poll());
    assert_request_eq!(inner, "second").send_response("ok");
    assert_eq!(assert_ready_ok!(second.poll()), "ok");
    assert_eq!(start.elapsed(), 100 * MS);
    assert_eq!((h.admitted(), h.rejected()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiting_call_gives_its_token_back() {
    let (mut svc, mut inner, h) =
        setup(config(10, 1000, 1, Admission::Wait(Duration::from_secs(1))));
    inner.allow(10);
    assert!(call_once(&mut svc, &mut inner).await.is_ok());
    assert_ready_ok!(svc.poll_ready());
    let mut waiting = task::spawn(svc.call("dropped"));
    assert_pending!(waiting.poll());
    assert_eq!(h.wait_time(), 200 * MS);
    drop(waiting);
    assert_eq!(h.wait_time(), 100 * MS, "the slot was refunded");
    advance(100 * MS).await;
    assert!(call_once(&mut svc, &mut inner).await.is_ok());
    assert_eq!(h.admitted(), 2);
}

#[tokio::test(start_paused = true)]
async fn live_rate_change_applies_at_once() {
    let (mut svc, mut inner, h) = setup(config(1, 1000, 1, Admission::FailFast));
    inner.allow(100);
    assert!(call_once(&mut svc, &mut inner).await.is_ok());
    // Speed up: the next slot keeps its old time (the admitted call already
    // moved the clock to 1 s), later spacing is the new one.
    h.set_rate(10, Duration::from_secs(1)).unwrap();
    assert_eq!(h.interval(), 100 * MS);
    advance(Duration::from_secs(1)).await;
    assert!(call_once(&mut svc, &mut inner).await.is_ok());
    let err = call_once(&mut svc, &mut inner).await.unwrap_err();
    assert_eq!(overloaded(&err).retry_after(), Some(100 * MS));
    advance(100 * MS).await;
    assert!(call_once(&mut svc, &mut inner).await.is_ok());

    // Slow down: the call just admitted (its slot 100 ms ahead) now counts
    // one slow interval, 500 ms, so the slower rate grants no fresh burst.
    h.set_rate(2, Duration::from_secs(1)).unwrap();
    let err = call_once(&mut svc, &mut inner).await.unwrap_err();
    assert_eq!(overloaded(&err).retry_after(), Some(500 * MS));
    advance(500 * MS).await;
    assert!(call_once(&mut svc, &mut inner).await.is_ok());
    let err = call_once(&mut svc, &mut inner).await.unwrap_err();
    assert_eq!(overloaded(&err).retry_after(), Some(500 * MS));

    let err = h.set_rate(0, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.field(), "rate");
    assert_eq!(h.interval(), 500 * MS, "a refused change changes nothing");
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_boxed() {
    let (mut svc, mut inner, _h) = setup(config(10, 1000, 10, Admission::FailFast));
    inner.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call("req"));
    assert_pending!(fut.poll());
    assert_request_eq!(inner, "req").send_error(std::io::Error::other("boom"));
    let err = assert_ready_err!(fut.poll());
    assert!(err.downcast_ref::<Overloaded>().is_none());
    assert_eq!(err.to_string(), "boom");
}

#[tokio::test(start_paused = true)]
async fn idle_clients_hold_nothing() {
    let (mut svc, mut inner, h) = setup(config(1, 1000, 1, Admission::FailFast));
    inner.allow(10);
    // Ready many times without calling: no token is taken.
    for _ in 0..5 {
        assert_ready_ok!(svc.poll_ready());
    }
    assert_eq!(h.wait_time(), Duration::ZERO);
    assert!(call_once(&mut svc, &mut inner).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn works_through_service_ext() {
    let layer = config(2, 1000, 1, Admission::Backpressure).build().unwrap();
    let svc = layer.layer(tower::service_fn(
        |x: u32| async move { Ok::<_, BoxError>(x) },
    ));
    let start = Instant::now();
    for i in 0..3 {
        assert_eq!(svc.clone().oneshot(i).await.unwrap(), i);
    }
    // Three calls at 2 per second with no burst: the third at 1 s.
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

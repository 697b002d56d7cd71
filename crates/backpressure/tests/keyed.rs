//! Per-key rate limiters: isolation, shared maps, live rate changes.

use std::time::Duration;

use rampart_backpressure::{Admission, KeyedRateLimit, Overloaded, RateLimitConfig};
use rampart_core::BoxError;
use rampart_core::keyed::KeyedConfig;
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::Layer;
use tower_test::mock;

type Req = (&'static str, u32);
type Mock = mock::Mock<Req, &'static str>;
type MockHandle = mock::Handle<Req, &'static str>;
type KeyFn = fn(&Req) -> &'static str;
type Svc = mock::Spawn<KeyedRateLimit<Mock, &'static str, KeyFn>>;

const MS: Duration = Duration::from_millis(1);

fn key(req: &Req) -> &'static str {
    req.0
}

async fn call(svc: &mut Svc, inner: &mut MockHandle, req: Req) -> Result<&'static str, BoxError> {
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call(req));
    match fut.poll() {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => {
            let (got, send) = inner.next_request().await.unwrap();
            assert_eq!(got, req);
            send.send_response("ok");
            fut.await
        }
    }
}

fn is_limited(r: &Result<&'static str, BoxError>) -> bool {
    matches!(r, Err(e) if e.is::<Overloaded>())
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_budget() {
    let layer = RateLimitConfig::new()
        .rate(1, Duration::from_secs(1))
        .burst(2)
        .build_keyed(key as KeyFn, KeyedConfig::default())
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_with(|m: Mock| layer.layer(m));
    inner.allow(100);

    for i in 0..2 {
        assert!(call(&mut svc, &mut inner, ("noisy", i)).await.is_ok());
    }
    assert!(is_limited(&call(&mut svc, &mut inner, ("noisy", 2)).await));
    // The noisy key spent its own budget only.
    for i in 0..2 {
        assert!(call(&mut svc, &mut inner, ("quiet", i)).await.is_ok());
    }
    assert_eq!(handle.len(), 2);
    let noisy = handle.get(&"noisy").unwrap();
    assert_eq!((noisy.admitted(), noisy.rejected()), (2, 1));
    assert_eq!(handle.get(&"quiet").unwrap().rejected(), 0);
    assert!(handle.get(&"absent").is_none());

    advance(Duration::from_secs(1)).await;
    assert!(call(&mut svc, &mut inner, ("noisy", 3)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn services_of_one_layer_share_the_map() {
    let layer = RateLimitConfig::new()
        .rate(1, Duration::from_secs(1))
        .burst(1)
        .build_keyed(key as KeyFn, KeyedConfig::default())
        .unwrap();
    let (mut a, mut inner_a) = mock::spawn_with(|m: Mock| layer.layer(m));
    let (mut b, mut inner_b) = mock::spawn_with(|m: Mock| layer.clone().layer(m));
    inner_a.allow(10);
    inner_b.allow(10);
    assert!(call(&mut a, &mut inner_a, ("k", 0)).await.is_ok());
    let r = call(&mut b, &mut inner_b, ("k", 1)).await;
    let err = r.unwrap_err();
    let e = err.downcast_ref::<Overloaded>().unwrap();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn keyed_backpressure_waits_for_the_slot_in_the_call() {
    let layer = RateLimitConfig::new()
        .rate(10, Duration::from_secs(1))
        .burst(1)
        .admission(Admission::Backpressure)
        .build_keyed(key as KeyFn, KeyedConfig::default())
        .unwrap();
    let (mut svc, mut inner) = mock::spawn_with(|m: Mock| layer.layer(m));
    inner.allow(10);
    assert!(call(&mut svc, &mut inner, ("k", 0)).await.is_ok());
    assert_ready_ok!(svc.poll_ready());
    let mut second = task::spawn(svc.call(("k", 1)));
    assert_pending!(second.poll());
    assert_eq!(second.remaining_wait(), 100 * MS);
    advance(100 * MS).await;
    assert!(second.is_woken());
    assert_pending!(second.poll());
    let (_, send) = inner.next_request().await.unwrap();
    send.send_response("ok");
    assert_ready_ok!(second.poll());
}

#[tokio::test(start_paused = true)]
async fn keyed_rate_change_reaches_live_and_future_keys() {
    let layer = RateLimitConfig::new()
        .rate(1, Duration::from_secs(1))
        .burst(1)
        .build_keyed(key as KeyFn, KeyedConfig::default())
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_with(|m: Mock| layer.layer(m));
    inner.allow(100);
    assert!(call(&mut svc, &mut inner, ("old", 0)).await.is_ok());
    handle.set_rate(10, Duration::from_secs(1)).unwrap();
    assert_eq!(handle.get(&"old").unwrap().interval(), 100 * MS);
    assert!(call(&mut svc, &mut inner, ("new", 0)).await.is_ok());
    assert_eq!(handle.get(&"new").unwrap().interval(), 100 * MS);
    assert_eq!(
        handle.set_rate(5, Duration::ZERO).unwrap_err().field(),
        "period"
    );
}

//! Per-key adaptive limiters: each key's limit follows its own calls.

use std::time::Duration;

use rampart_backpressure::{AdaptiveLimitConfig, KeyedAdaptiveLimit, Overloaded};
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
type Svc = mock::Spawn<KeyedAdaptiveLimit<Mock, &'static str, KeyFn>>;

const MS: Duration = Duration::from_millis(1);

fn key(req: &Req) -> &'static str {
    req.0
}

/// How the inner service answers one call.
#[derive(Clone, Copy)]
enum Answer {
    Fast,
    Slow,
    Fail,
}

/// One call, answered by the inner service as told.
async fn call(
    svc: &mut Svc,
    inner: &mut MockHandle,
    req: Req,
    answer: Answer,
) -> Result<&'static str, BoxError> {
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call(req));
    if let std::task::Poll::Ready(result) = fut.poll() {
        return result;
    }
    let (got, send) = inner.next_request().await.unwrap();
    assert_eq!(got, req);
    match answer {
        Answer::Fast => send.send_response("ok"),
        Answer::Slow => {
            advance(200 * MS).await;
            send.send_response("late");
        }
        Answer::Fail => send.send_error(std::io::Error::other("boom")),
    }
    fut.await
}

#[tokio::test(start_paused = true)]
async fn one_keys_slow_and_failing_calls_shrink_only_its_own_limit() {
    let layer = AdaptiveLimitConfig::new()
        .initial_limit(8)
        .max_limit(8)
        .backoff_ratio(0.5)
        .latency_threshold(100 * MS)
        .build_keyed(key as KeyFn, KeyedConfig::default())
        .unwrap();
    let handle = layer.handle();
    assert!(handle.is_empty());
    let (mut svc, mut inner) = mock::spawn_with(|m: Mock| layer.layer(m));
    inner.allow(100);

    // Tenant b's calls are fast; tenant a's slow, then failing, one after
    // another: each of a's shrinks a's limit by half (8 → 4 → 2 → 1).
    let calls = [
        ("tenant-b", Answer::Fast),
        ("tenant-b", Answer::Fast),
        ("tenant-a", Answer::Slow),
        ("tenant-b", Answer::Fast),
        ("tenant-a", Answer::Fail),
        ("tenant-a", Answer::Fail),
    ];
    for (i, (tenant, answer)) in (0..).zip(calls) {
        let result = call(&mut svc, &mut inner, (tenant, i), answer).await;
        assert_eq!(result.is_ok(), !matches!(answer, Answer::Fail));
    }

    let a = handle.get(&"tenant-a").unwrap();
    let b = handle.get(&"tenant-b").unwrap();
    assert_eq!((a.limit(), a.drops()), (1, 3));
    assert_eq!((b.limit(), b.drops()), (8, 0));
    assert!(handle.get(&"tenant-c").is_none());
    assert_eq!(handle.len(), 2);
    let mut keys: Vec<_> = handle
        .entries()
        .into_iter()
        .map(|(key, h)| (*key, h.limit()))
        .collect();
    keys.sort();
    assert_eq!(keys, [("tenant-a", 1), ("tenant-b", 8)]);

    // With one call of a in flight, a is at its limit; b is not.
    assert_ready_ok!(svc.poll_ready());
    let mut held = task::spawn(svc.call(("tenant-a", 3)));
    assert_pending!(held.poll());
    let (_, held_response) = inner.next_request().await.unwrap();
    let err = call(&mut svc, &mut inner, ("tenant-a", 4), Answer::Fast)
        .await
        .unwrap_err();
    assert!(err.is::<Overloaded>());
    assert_eq!((a.rejected(), a.in_flight()), (1, 1));
    for i in 10..14 {
        let result = call(&mut svc, &mut inner, ("tenant-b", i), Answer::Fast).await;
        assert!(result.is_ok());
    }
    assert_eq!(b.rejected(), 0);
    held_response.send_response("ok");
    assert_ready_ok!(held.poll());
}

#[tokio::test(start_paused = true)]
async fn services_of_one_layer_share_each_keys_limiter() {
    let layer = AdaptiveLimitConfig::new()
        .initial_limit(1)
        .max_limit(1)
        .build_keyed(key as KeyFn, KeyedConfig::default())
        .unwrap();
    let (mut a, mut inner_a) = mock::spawn_with(|m: Mock| layer.layer(m));
    let (mut b, mut inner_b) = mock::spawn_with(|m: Mock| layer.clone().layer(m));
    inner_a.allow(10);
    inner_b.allow(10);
    assert_ready_ok!(a.poll_ready());
    let mut held = task::spawn(a.call(("k", 0)));
    assert_pending!(held.poll());
    let err = call(&mut b, &mut inner_b, ("k", 1), Answer::Fast)
        .await
        .unwrap_err();
    assert!(err.is::<Overloaded>());
    assert!(
        call(&mut b, &mut inner_b, ("other", 0), Answer::Fast)
            .await
            .is_ok()
    );
    let (_, send) = inner_a.next_request().await.unwrap();
    send.send_response("ok");
    assert_ready_ok!(held.poll());
    assert_eq!(layer.handle().len(), 2);
}

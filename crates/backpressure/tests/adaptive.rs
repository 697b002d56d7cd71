//! The adaptive concurrency limit: admission, permits, AIMD steps, and
//! convergence under a synthetic latency curve, on a paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rampart_backpressure::{
    AdaptiveHandle, AdaptiveLimit, AdaptiveLimitConfig, Admission, Algorithm, Overloaded, Reason,
};
use tokio::time::{Instant, advance, sleep};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

type Mock = mock::Mock<&'static str, &'static str>;
type MockHandle = mock::Handle<&'static str, &'static str>;

const MS: Duration = Duration::from_millis(1);

fn setup(
    config: AdaptiveLimitConfig,
) -> (mock::Spawn<AdaptiveLimit<Mock>>, MockHandle, AdaptiveHandle) {
    let layer = config.build().unwrap();
    let handle = layer.handle();
    let (svc, inner) = mock::spawn_layer(layer);
    (svc, inner, handle)
}

fn fixed(limit: usize, admission: Admission) -> AdaptiveLimitConfig {
    AdaptiveLimitConfig::new()
        .initial_limit(limit)
        .min_limit(1)
        .max_limit(limit)
        .admission(admission)
}

#[tokio::test(start_paused = true)]
async fn fail_fast_at_the_limit_and_released_on_drop() {
    let (mut svc, mut inner, h) = setup(fixed(2, Admission::FailFast));
    inner.allow(10);
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    assert_ready_ok!(svc.poll_ready());
    let b = task::spawn(svc.call("b"));
    assert_eq!(h.in_flight(), 2);
    assert_ready_ok!(svc.poll_ready());
    let mut c = task::spawn(svc.call("c"));
    let err = assert_ready_err!(c.poll());
    let e = err.downcast_ref::<Overloaded>().unwrap();
    assert_eq!(e.reason(), Reason::ConcurrencyLimit);
    assert_eq!(h.rejected(), 1);

    drop(b);
    assert_eq!(h.in_flight(), 1, "a dropped call releases its permit");
    assert_request_eq!(inner, "a").send_response("A");
    let _ = assert_request_eq!(inner, "b");
    assert_eq!(assert_ready_ok!(a.poll()), "A");
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn backpressure_wakes_when_a_call_completes() {
    let (mut svc, mut inner, h) = setup(fixed(1, Admission::Backpressure));
    inner.allow(10);
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    assert_pending!(svc.poll_ready());
    assert_request_eq!(inner, "a").send_response("A");
    assert!(!svc.is_woken());
    assert_eq!(assert_ready_ok!(a.poll()), "A");
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());
    assert_eq!(h.rejected(), 0);
}

#[tokio::test(start_paused = true)]
async fn wait_takes_a_permit_in_time_or_fails_after_the_bound() {
    let (mut svc, mut inner, h) = setup(fixed(1, Admission::Wait(100 * MS)));
    inner.allow(10);
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_pending!(b.poll());
    advance(50 * MS).await;
    assert_request_eq!(inner, "a").send_response("A");
    assert_eq!(assert_ready_ok!(a.poll()), "A");
    assert!(b.is_woken());
    assert_pending!(b.poll());
    assert_eq!(h.in_flight(), 1);

    assert_ready_ok!(svc.poll_ready());
    let mut c = task::spawn(svc.call("c"));
    assert_pending!(c.poll());
    advance(100 * MS).await;
    let err = assert_ready_err!(c.poll());
    assert!(err.is::<Overloaded>());
    assert_request_eq!(inner, "b").send_response("B");
    assert_eq!(assert_ready_ok!(b.poll()), "B");
}

/// Starts `n` calls at once and answers them fast.
async fn round(svc: &mut mock::Spawn<AdaptiveLimit<Mock>>, inner: &mut MockHandle, n: usize) {
    let mut calls: Vec<_> = (0..n)
        .map(|_| {
            assert_ready_ok!(svc.poll_ready());
            task::spawn(svc.call("x"))
        })
        .collect();
    for call in &mut calls {
        assert_request_eq!(inner, "x").send_response("X");
        assert_ready_ok!(call.poll());
    }
}

#[tokio::test(start_paused = true)]
async fn aimd_steps() {
    let config = AdaptiveLimitConfig::new()
        .initial_limit(4)
        .max_limit(5)
        .backoff_ratio(0.5)
        .latency_threshold(100 * MS);
    let (mut svc, mut inner, h) = setup(config);
    inner.allow(100);

    // Fast calls with fewer than half the limit in flight: no change.
    round(&mut svc, &mut inner, 1).await;
    round(&mut svc, &mut inner, 1).await;
    assert_eq!(h.limit(), 4);

    // A full round trip at the limit: the calls that ran with at least half
    // the limit in flight (3 of 4) each add 1/4: +0.75, then +0.75 again,
    // capped at max_limit.
    round(&mut svc, &mut inner, 4).await;
    assert_eq!(h.limit(), 4);
    round(&mut svc, &mut inner, 4).await;
    assert_eq!(h.limit(), 5);

    // Two slow calls of the same round trip: one decrease (×0.5), not two.
    let mut slow: Vec<_> = (0..2)
        .map(|_| {
            assert_ready_ok!(svc.poll_ready());
            task::spawn(svc.call("slow"))
        })
        .collect();
    let (_, first) = inner.next_request().await.unwrap();
    let (_, second) = inner.next_request().await.unwrap();
    advance(101 * MS).await;
    first.send_response("S");
    second.send_response("S");
    for call in &mut slow {
        assert_ready_ok!(call.poll());
    }
    assert_eq!(h.limit(), 2);
    assert_eq!(h.drops(), 2);

    // Failed calls, one after another: ×0.5 each, bounded by min_limit.
    for expected in [1, 1] {
        assert_ready_ok!(svc.poll_ready());
        let mut failing = task::spawn(svc.call("err"));
        assert_request_eq!(inner, "err").send_error(std::io::Error::other("boom"));
        assert_ready_err!(failing.poll());
        assert_eq!(h.limit(), expected);
    }
    assert_eq!(h.drops(), 4);
}

/// Runs 100 clients, each calling in a loop for 20 s of virtual time,
/// against an inner service whose latency grows once more than 20 calls
/// are in flight: 10 ms up to 20, then 5 ms more per extra call. Returns
/// the limit sampled every 100 ms, the peak in flight and the handle.
async fn run_latency_curve(config: AdaptiveLimitConfig) -> (Vec<usize>, usize, AdaptiveHandle) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let inner = {
        let in_flight = in_flight.clone();
        let peak = peak.clone();
        service_fn(move |_: ()| {
            let in_flight = in_flight.clone();
            let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(n, Ordering::SeqCst);
            let latency = 10 * MS + 5 * MS * u32::try_from(n.saturating_sub(20)).unwrap();
            async move {
                sleep(latency).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(())
            }
        })
    };
    let layer = config
        .initial_limit(5)
        .max_limit(500)
        .admission(Admission::Backpressure)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(inner);

    let end = Instant::now() + Duration::from_secs(20);
    let mut limits = Vec::new();
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                while Instant::now() < end {
                    svc.clone().oneshot(()).await.unwrap();
                }
            })
        })
        .collect();
    while Instant::now() < end {
        sleep(100 * MS).await;
        limits.push(handle.limit());
    }
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(handle.in_flight(), 0);
    (limits, peak.load(Ordering::SeqCst), handle)
}

/// AIMD with a latency threshold of 30 ms: the sustainable concurrency is
/// 24 (latency 30 ms); the limit saw-tooths just below and above it.
#[tokio::test(start_paused = true)]
async fn aimd_converges_under_a_latency_curve() {
    let config = AdaptiveLimitConfig::new().latency_threshold(30 * MS);
    let (limits, peak, handle) = run_latency_curve(config).await;
    let tail = &limits[limits.len() / 2..];
    let (lo, hi) = (*tail.iter().min().unwrap(), *tail.iter().max().unwrap());
    assert!(lo >= 20 && hi <= 28, "limit {lo}..={hi} over {tail:?}");
    assert!(peak <= 28, "peak in flight {peak}");
    assert!(handle.drops() > 0);
}

/// Vegas, with no drops at all: the limit settles just above the knee of
/// the curve, where queueing at the inner service starts (20 in flight).
#[tokio::test(start_paused = true)]
async fn vegas_converges_under_a_latency_curve() {
    let config = AdaptiveLimitConfig::new()
        .algorithm(Algorithm::Vegas)
        .latency_threshold(Duration::from_secs(10));
    let (limits, peak, handle) = run_latency_curve(config).await;
    // Vegas steps up by 6 when it sees no queue, then down by 1 per round
    // trip: a saw-tooth from the knee to about 12 above it.
    let tail = &limits[limits.len() / 2..];
    let (lo, hi) = (*tail.iter().min().unwrap(), *tail.iter().max().unwrap());
    let mean = tail.iter().sum::<usize>() / tail.len();
    assert!(lo >= 18 && hi <= 34, "limit {lo}..={hi} over {tail:?}");
    assert!((22..=30).contains(&mean), "mean limit {mean} over {tail:?}");
    assert!(peak <= 34, "peak in flight {peak}");
    assert_eq!(handle.drops(), 0);
}

#[tokio::test(start_paused = true)]
async fn backpressure_race_loser_waits_without_exceeding_the_limit() {
    let layer = fixed(1, Admission::Backpressure).build().unwrap();
    let h = layer.handle();
    let (mut a, mut inner_a) = mock::spawn_with(|m: Mock| layer.layer(m));
    let (mut b, mut inner_b) = mock::spawn_with(|m: Mock| layer.layer(m));
    inner_a.allow(10);
    inner_b.allow(10);
    assert_ready_ok!(a.poll_ready());
    assert_ready_ok!(b.poll_ready());
    let mut first = task::spawn(a.call("a"));
    let mut second = task::spawn(b.call("b"));
    assert_pending!(second.poll());
    assert_eq!(h.in_flight(), 1, "never above the limit");
    assert!(inner_b.poll_request().is_pending());
    assert_request_eq!(inner_a, "a").send_response("A");
    assert_eq!(assert_ready_ok!(first.poll()), "A");
    assert!(second.is_woken());
    assert_pending!(second.poll());
    assert_request_eq!(inner_b, "b").send_response("B");
    assert_eq!(assert_ready_ok!(second.poll()), "B");
    assert_eq!(h.rejected(), 0);
}

#[test]
fn config_defaults_validation_and_toml() {
    let h = AdaptiveLimitConfig::default().build().unwrap().handle();
    assert_eq!((h.name(), h.limit(), h.in_flight()), ("", 20, 0));

    let cases = [
        (AdaptiveLimitConfig::new().min_limit(0), "min_limit"),
        (
            AdaptiveLimitConfig::new().max_limit(1_000_000_001),
            "max_limit",
        ),
        (
            AdaptiveLimitConfig::new().min_limit(10).max_limit(5),
            "max_limit",
        ),
        (AdaptiveLimitConfig::new().initial_limit(0), "initial_limit"),
        (
            AdaptiveLimitConfig::new().initial_limit(2000),
            "initial_limit",
        ),
        (
            AdaptiveLimitConfig::new().backoff_ratio(1.0),
            "backoff_ratio",
        ),
        (
            AdaptiveLimitConfig::new().backoff_ratio(0.1),
            "backoff_ratio",
        ),
        (
            AdaptiveLimitConfig::new().backoff_ratio(f64::NAN),
            "backoff_ratio",
        ),
        (
            AdaptiveLimitConfig::new().latency_threshold(Duration::ZERO),
            "latency_threshold",
        ),
        (
            AdaptiveLimitConfig::new().admission(Admission::Wait(Duration::ZERO)),
            "admission",
        ),
    ];
    for (config, field) in cases {
        assert_eq!(
            config.clone().build().unwrap_err().field(),
            field,
            "{config:?}"
        );
    }

    let config: AdaptiveLimitConfig =
        toml::from_str("name = \"db\"\nmin_limit = 2\nbackoff_ratio = 0.75\nalgorithm = \"vegas\"")
            .unwrap();
    assert_eq!(
        config,
        AdaptiveLimitConfig::new()
            .name("db")
            .min_limit(2)
            .backoff_ratio(0.75)
            .algorithm(Algorithm::Vegas)
    );
    assert!(toml::from_str::<AdaptiveLimitConfig>("algorithm = \"gradient\"").is_err());
    let err = toml::from_str::<AdaptiveLimitConfig>("limit = 3").unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
}

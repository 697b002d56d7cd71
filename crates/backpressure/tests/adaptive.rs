//! The adaptive concurrency limit: admission, permits, AIMD steps, and
//! convergence under a synthetic latency curve, on a paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rampart_backpressure::adaptive::future::ResponseFuture;
use rampart_backpressure::{
    AdaptiveHandle, AdaptiveLimit, AdaptiveLimitConfig, Admission, Algorithm, MAX_LONG_WINDOW,
    Overloaded, QueueSize, Reason,
};
use tokio::time::{Instant, advance, sleep};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

type Mock = mock::Mock<&'static str, &'static str>;
type MockHandle = mock::Handle<&'static str, &'static str>;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

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
    run_curve(config, Duration::from_secs(20), None).await
}

/// As [`run_latency_curve`] for `run` of virtual time, with the latency
/// curve scaled by a base latency: `base` up to 20 calls in flight, then
/// `base / 2` more per extra call. The base is 10 ms, and becomes
/// `shift.1` for good at `shift.0` (a slower service, healthy all the same:
/// its knee is still at 20 calls). The peak in flight counts from 5 s
/// after the start or the shift.
async fn run_curve(
    config: AdaptiveLimitConfig,
    run: Duration,
    shift: Option<(Duration, Duration)>,
) -> (Vec<usize>, usize, AdaptiveHandle) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let inner = {
        let in_flight = in_flight.clone();
        let peak = peak.clone();
        service_fn(move |_: ()| {
            let in_flight = in_flight.clone();
            let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            let (base, settled) = match shift {
                Some((at, base)) if start.elapsed() >= at => (base, at + 5 * SEC),
                _ => (10 * MS, 5 * SEC),
            };
            if start.elapsed() >= settled {
                peak.fetch_max(n, Ordering::SeqCst);
            }
            let latency = base + base / 2 * u32::try_from(n.saturating_sub(20)).unwrap();
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

    let end = start + run;
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
    // trip: a saw-tooth from a little above the knee to about 16 above it.
    let tail = &limits[limits.len() / 2..];
    let (lo, hi) = (*tail.iter().min().unwrap(), *tail.iter().max().unwrap());
    let mean = tail.iter().sum::<usize>() / tail.len();
    assert!(lo >= 18 && hi <= 38, "limit {lo}..={hi} over {tail:?}");
    assert!((24..=32).contains(&mean), "mean limit {mean} over {tail:?}");
    assert!(peak <= 38, "peak in flight {peak}");
    assert_eq!(handle.drops(), 0);
}

fn gradient2() -> AdaptiveLimitConfig {
    AdaptiveLimitConfig::new()
        .algorithm(Algorithm::Gradient2)
        .latency_threshold(Duration::from_secs(10))
}

/// Gradient2 with its defaults, no drops: the limit climbs from 5 to the
/// knee within a second, then stays a little above it, where a round
/// trip's latency is about `rtt_tolerance` (1.5) times its long-term
/// average. The average follows the latency the limit causes, so the limit
/// creeps up slowly (a call every second or two here).
#[tokio::test(start_paused = true)]
async fn gradient2_converges_under_a_latency_curve() {
    let (limits, peak, handle) = run_curve(gradient2(), 20 * SEC, None).await;
    let settled = &limits[10..];
    let (lo, hi) = (
        *settled.iter().min().unwrap(),
        *settled.iter().max().unwrap(),
    );
    assert!(lo >= 18 && hi <= 36, "limit {lo}..={hi} over {settled:?}");
    assert!(peak <= 36, "peak in flight {peak}");
    assert_eq!(handle.drops(), 0);
    // The base it measures against: above the unloaded 10 ms, as the
    // average of what the limit let through.
    let long = handle.long_rtt().unwrap();
    assert!(
        long > 10 * MS && long < 60 * MS,
        "long-term latency {long:?}"
    );
}

/// The inner service becomes 4 × slower for good at 5 s (10 ms → 40 ms
/// unloaded, its knee still at 20 calls): slower, but healthy. Gradient2
/// re-learns its base latency and keeps a limit around the knee; Vegas
/// measures against the 10 ms it saw first, takes the new latency for a
/// queue and shrinks its limit far below the knee for good.
#[tokio::test(start_paused = true)]
async fn gradient2_relearns_a_slower_base_latency_where_vegas_collapses() {
    let shift = Some((5 * SEC, 40 * MS));
    let (limits, peak, handle) = run_curve(gradient2(), 40 * SEC, shift).await;
    let tail = &limits[limits.len() - 100..];
    let (lo, hi) = (*tail.iter().min().unwrap(), *tail.iter().max().unwrap());
    assert!(lo >= 18 && hi <= 32, "limit {lo}..={hi} over {tail:?}");
    assert!(peak <= 32, "peak in flight {peak}");
    let long = handle.long_rtt().unwrap();
    assert!(long >= 40 * MS, "long-term latency {long:?} re-learnt");

    let vegas = AdaptiveLimitConfig::new()
        .algorithm(Algorithm::Vegas)
        .latency_threshold(Duration::from_secs(10));
    let (limits, _, _) = run_curve(vegas, 40 * SEC, shift).await;
    let tail = &limits[limits.len() - 100..];
    let hi = *tail.iter().max().unwrap();
    assert!(hi <= 10, "Vegas kept {hi} over {tail:?}");

    // Gradient2 itself, with a long window too long to re-learn within the
    // run, collapses the same way: the recovery is the re-learning.
    let (limits, _, _) = run_curve(gradient2().long_window(1_000_000), 40 * SEC, shift).await;
    let tail = &limits[limits.len() - 100..];
    let hi = *tail.iter().max().unwrap();
    assert!(
        hi <= 10,
        "Gradient2 without re-learning kept {hi} over {tail:?}"
    );
}

type Call = task::Spawn<ResponseFuture<Mock, &'static str>>;

fn call(svc: &mut mock::Spawn<AdaptiveLimit<Mock>>, request: &'static str) -> Call {
    assert_ready_ok!(svc.poll_ready());
    task::spawn(svc.call(request))
}

/// Answers the call `request` waiting at the inner service.
async fn answer(inner: &mut MockHandle, request: &'static str) {
    let (got, send) = inner.next_request().await.unwrap();
    assert_eq!(got, request);
    send.send_response("ok");
}

/// With a limit of 1: call `a`, which takes the permit, then calls `b`,
/// `c` and `d`, which wait in line in that order.
fn line_up(svc: &mut mock::Spawn<AdaptiveLimit<Mock>>) -> (Call, Vec<(&'static str, Call)>) {
    let a = call(svc, "a");
    let waiters = ["b", "c", "d"]
        .into_iter()
        .map(|name| {
            let mut waiter = call(svc, name);
            assert_pending!(waiter.poll());
            (name, waiter)
        })
        .collect();
    (a, waiters)
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let (mut svc, mut inner, h) = setup(fixed(1, Admission::Wait(10 * SEC)));
    inner.allow(10);
    let (mut a, mut waiters) = line_up(&mut svc);
    assert_eq!((h.in_flight(), h.waiting()), (1, 3));

    answer(&mut inner, "a").await;
    assert_ready_ok!(a.poll());
    for i in 0..waiters.len() {
        // Only the first in line is woken, and gets the freed permit.
        assert!(waiters[i].1.is_woken());
        for (name, later) in &waiters[i + 1..] {
            assert!(!later.is_woken(), "{name} woken out of turn");
        }
        let (name, waiter) = &mut waiters[i];
        assert_pending!(waiter.poll());
        answer(&mut inner, name).await;
        assert_ready_ok!(waiter.poll());
    }
    assert_eq!((h.in_flight(), h.waiting(), h.rejected()), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiters_pass_their_turn_and_their_permit_on() {
    let (mut svc, mut inner, h) = setup(fixed(1, Admission::Wait(10 * SEC)));
    inner.allow(10);
    let (mut a, mut queued) = line_up(&mut svc);
    let (_, mut d) = queued.pop().unwrap();
    let (_, c) = queued.pop().unwrap();
    let (_, b) = queued.pop().unwrap();

    // `c` gives up while in line: its turn goes.
    drop(c);
    assert_eq!(h.waiting(), 2);
    // `a` completes: the permit is handed to `b`, which gives up before
    // taking it: the permit goes on to `d`, not lost.
    answer(&mut inner, "a").await;
    assert_ready_ok!(a.poll());
    assert_eq!((h.in_flight(), h.waiting()), (1, 1));
    drop(b);
    assert!(d.is_woken());
    assert_eq!((h.in_flight(), h.waiting()), (1, 0));
    assert_pending!(d.poll());
    answer(&mut inner, "d").await;
    assert_ready_ok!(d.poll());
    assert_eq!(h.in_flight(), 0, "no permit leaked");

    // The next call is admitted at once.
    let mut e = call(&mut svc, "e");
    assert_pending!(e.poll());
    assert_eq!(h.in_flight(), 1);
    answer(&mut inner, "e").await;
    assert_ready_ok!(e.poll());
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_does_not_overtake_a_waiter() {
    let (mut svc, mut inner, h) = setup(fixed(1, Admission::Wait(10 * SEC)));
    inner.allow(10);
    let mut a = call(&mut svc, "a");
    let mut b = call(&mut svc, "b");
    assert_pending!(b.poll());
    answer(&mut inner, "a").await;
    assert_ready_ok!(a.poll());
    // The permit `a` freed is `b`'s, though `b` has not run yet.
    let mut newcomer = call(&mut svc, "newcomer");
    assert_pending!(newcomer.poll());
    assert!(inner.poll_request().is_pending(), "the newcomer overtook");
    assert_eq!((h.in_flight(), h.waiting()), (1, 1));
    assert_pending!(b.poll());
    answer(&mut inner, "b").await;
    assert_ready_ok!(b.poll());
    assert!(newcomer.is_woken());
    assert_pending!(newcomer.poll());
    answer(&mut inner, "newcomer").await;
    assert_ready_ok!(newcomer.poll());
}

/// Under `Backpressure`, services wait in line in `poll_ready`: the one
/// that waited first is handed the permit and keeps it for its call; a
/// newcomer waits behind it; a service dropped while holding the permit
/// passes it on.
#[tokio::test(start_paused = true)]
async fn backpressure_serves_waiting_services_in_order() {
    let layer = fixed(1, Admission::Backpressure).build().unwrap();
    let h = layer.handle();
    let mut services: Vec<_> = (0..4)
        .map(|_| {
            let (svc, mut inner) = mock::spawn_with(|m: Mock| layer.layer(m));
            inner.allow(10);
            (svc, inner)
        })
        .collect();
    let mut a = {
        let (svc, _) = &mut services[0];
        call(svc, "a")
    };
    assert_pending!(services[1].0.poll_ready());
    assert_pending!(services[2].0.poll_ready());
    assert_eq!(h.waiting(), 2);

    answer(&mut services[0].1, "a").await;
    assert_ready_ok!(a.poll());
    assert!(services[1].0.is_woken());
    assert!(!services[2].0.is_woken());
    // The newcomer waits behind the service that was handed the permit.
    assert_pending!(services[3].0.poll_ready());
    assert_eq!((h.in_flight(), h.waiting()), (1, 2));

    // Service 1 is ready with its permit, but goes away without calling:
    // the permit goes to service 2, the next in line.
    assert_ready_ok!(services[1].0.poll_ready());
    drop(services.remove(1));
    assert!(services[1].0.is_woken());
    assert!(!services[2].0.is_woken());
    let mut c = {
        let (svc, _) = &mut services[1];
        call(svc, "c")
    };
    assert_eq!((h.in_flight(), h.waiting()), (1, 1));
    answer(&mut services[1].1, "c").await;
    assert_ready_ok!(c.poll());
    assert!(services[2].0.is_woken());
    let mut d = {
        let (svc, _) = &mut services[2];
        call(svc, "d")
    };
    answer(&mut services[2].1, "d").await;
    assert_ready_ok!(d.poll());
    assert_eq!((h.in_flight(), h.waiting(), h.rejected()), (0, 0, 0));
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
        (AdaptiveLimitConfig::new().smoothing(0.0), "smoothing"),
        (AdaptiveLimitConfig::new().smoothing(1.5), "smoothing"),
        (AdaptiveLimitConfig::new().smoothing(f64::NAN), "smoothing"),
        (
            AdaptiveLimitConfig::new().rtt_tolerance(0.9),
            "rtt_tolerance",
        ),
        (
            AdaptiveLimitConfig::new().rtt_tolerance(f64::INFINITY),
            "rtt_tolerance",
        ),
        (AdaptiveLimitConfig::new().long_window(0), "long_window"),
        (
            AdaptiveLimitConfig::new().long_window(MAX_LONG_WINDOW + 1),
            "long_window",
        ),
        (
            AdaptiveLimitConfig::new().queue_size(QueueSize::Fixed(0)),
            "queue_size",
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

    let config: AdaptiveLimitConfig = toml::from_str(
        "algorithm = \"gradient2\"\nsmoothing = 0.5\nrtt_tolerance = 2.0\n\
         long_window = 100\nqueue_size = \"sqrt\"",
    )
    .unwrap();
    assert_eq!(
        config,
        AdaptiveLimitConfig::new()
            .algorithm(Algorithm::Gradient2)
            .smoothing(0.5)
            .rtt_tolerance(2.0)
            .long_window(100)
            .queue_size(QueueSize::Sqrt)
    );
    // Netflix's defaults.
    assert_eq!(
        toml::from_str::<AdaptiveLimitConfig>("queue_size = 4").unwrap(),
        AdaptiveLimitConfig::new()
            .smoothing(0.2)
            .rtt_tolerance(1.5)
            .long_window(600)
            .queue_size(QueueSize::Fixed(4))
    );
    for bad in [
        "queue_size = \"log\"",
        "queue_size = -1",
        "queue_size = 1.5",
    ] {
        let err = toml::from_str::<AdaptiveLimitConfig>(bad).unwrap_err();
        assert!(err.to_string().contains("sqrt"), "{bad}: {err}");
    }
    let err = toml::from_str::<AdaptiveLimitConfig>("limit = 3").unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
}

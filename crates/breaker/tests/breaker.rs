//! Behaviour of the breaker layer, on tokio's paused clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rampart_breaker::{BreakerConfig, BreakerLayer, BreakerOpen, RejectMode, State};
use rampart_core::BoxError;
use rampart_core::classify::HttpClassifier;
use rampart_core::keyed::KeyedConfig;
use tokio::time::{advance, sleep};
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, &'static str>> + Send>>;

/// A service that fails when asked to, after an optional delay.
#[derive(Clone, Copy, Debug)]
struct Call {
    fail: bool,
    delay: Duration,
}

const OK: Call = Call {
    fail: false,
    delay: Duration::ZERO,
};
const FAIL: Call = Call {
    fail: true,
    delay: Duration::ZERO,
};

fn scripted() -> impl Service<Call, Response = (), Error = &'static str, Future = BoxFut<()>> + Clone
{
    service_fn(|c: Call| -> BoxFut<()> {
        Box::pin(async move {
            if !c.delay.is_zero() {
                sleep(c.delay).await;
            }
            if c.fail { Err("boom") } else { Ok(()) }
        })
    })
}

async fn run<S>(svc: &mut S, c: Call) -> Result<(), BoxError>
where
    S: Service<Call, Response = (), Error = BoxError>,
{
    svc.ready().await?.call(c).await
}

fn is_open(r: Result<(), BoxError>) -> BreakerOpen {
    r.expect_err("expected a rejection")
        .downcast::<BreakerOpen>()
        .map(|b| *b)
        .expect("expected BreakerOpen")
}

fn base() -> BreakerConfig {
    BreakerConfig::new()
        .count_window(10)
        .minimum_calls(4)
        .failure_rate_threshold(0.5)
        .open_duration(Duration::from_secs(10))
        .half_open_max_calls(2)
}

#[tokio::test(start_paused = true)]
async fn trips_on_failure_rate_only_after_minimum_calls() {
    let layer = base().build().unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(scripted());
    for _ in 0..3 {
        assert!(run(&mut svc, FAIL).await.is_err());
    }
    assert_eq!(
        h.state(),
        State::Closed,
        "3 calls are below the minimum of 4"
    );
    run(&mut svc, OK).await.unwrap();
    // 3 of 4 failed: 75% ≥ 50%
    assert_eq!(h.state(), State::Open);
    let open = is_open(run(&mut svc, OK).await);
    assert_eq!(open.state(), State::Open);
    assert_eq!(open.retry_in(), Some(Duration::from_secs(10)));
    assert_eq!(h.metrics().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn stays_closed_below_the_failure_rate() {
    let layer = base().build().unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(scripted());
    for i in 0..40 {
        let c = if i % 3 == 2 { FAIL } else { OK };
        let _ = run(&mut svc, c).await;
    }
    assert_eq!(h.state(), State::Closed);
    let m = h.metrics();
    assert_eq!(m.calls, 10, "count window holds the last 10 calls");
    assert!(m.failure_rate < 0.5);
}

#[tokio::test(start_paused = true)]
async fn trips_on_consecutive_failures() {
    let layer = base()
        .count_window(100)
        .minimum_calls(100)
        .consecutive_failures(3)
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(scripted());
    for c in [FAIL, FAIL, OK, FAIL, FAIL] {
        let _ = run(&mut svc, c).await;
    }
    assert_eq!(h.state(), State::Closed, "the success broke the run");
    let _ = run(&mut svc, FAIL).await;
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn trips_on_slow_call_rate() {
    let layer = base()
        .slow_calls(Duration::from_millis(100), 0.5)
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(scripted());
    let slow = Call {
        fail: false,
        delay: Duration::from_millis(150),
    };
    let fast = Call {
        fail: false,
        delay: Duration::from_millis(99),
    };
    for c in [fast, fast, slow] {
        run(&mut svc, c).await.unwrap();
    }
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.metrics().slow_calls, 1);
    run(&mut svc, slow).await.unwrap();
    assert_eq!(h.state(), State::Open, "2 of 4 calls slow");
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_old_failures() {
    let layer = base()
        .time_window(Duration::from_secs(10), 10)
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(scripted());
    for _ in 0..3 {
        let _ = run(&mut svc, FAIL).await;
    }
    advance(Duration::from_secs(11)).await;
    assert_eq!(
        h.metrics().calls,
        0,
        "the failures rolled out of the window"
    );
    let _ = run(&mut svc, FAIL).await;
    assert_eq!(h.state(), State::Closed, "1 call in the window");
    // Within one window: trips.
    for _ in 0..3 {
        advance(Duration::from_secs(2)).await;
        let _ = run(&mut svc, FAIL).await;
    }
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_k_trials_and_closes_on_success() {
    let layer = base().build().unwrap();
    let h = layer.handle();
    let (mock, mut handle) = mock::pair::<&'static str, &'static str>();
    let mut svc = mock::Spawn::new(layer.layer(mock));
    h.force_closed();
    // Trip it by hand-made failures through the mock.
    handle.allow(100);
    for _ in 0..4 {
        assert_ready_ok!(svc.poll_ready());
        let fut = svc.call("x");
        let (_, send) = handle.next_request().await.unwrap();
        send.send_error("boom");
        assert!(fut.await.is_err());
    }
    assert_eq!(h.state(), State::Open);
    advance(Duration::from_secs(10)).await;

    // Two trials are admitted; the third is refused while they run.
    assert_ready_ok!(svc.poll_ready());
    let t1 = svc.call("t1");
    assert_eq!(h.state(), State::HalfOpen);
    assert_ready_ok!(svc.poll_ready());
    let t2 = svc.call("t2");
    assert_ready_ok!(svc.poll_ready());
    let refused = is_open(svc.call("t3").await.map(|_| ()));
    assert_eq!(refused.state(), State::HalfOpen);
    assert_eq!(refused.retry_in(), None);

    for _ in 0..2 {
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response("ok");
    }
    t1.await.unwrap();
    assert_eq!(h.state(), State::HalfOpen, "one of two trials done");
    t2.await.unwrap();
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.metrics().calls, 0, "closing empties the window");
}

async fn trip(svc: &mut (impl Service<Call, Response = (), Error = BoxError> + Send)) {
    for _ in 0..4 {
        let _ = run(svc, FAIL).await;
    }
}

#[tokio::test(start_paused = true)]
async fn failed_trial_reopens_with_growing_open_duration() {
    let layer = base()
        .open_duration_growth(2.0, Duration::from_secs(30))
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(scripted());
    trip(&mut svc).await;
    let mut expected = [10, 20, 30, 30].into_iter();
    let mut wait = Duration::from_secs(expected.next().unwrap());
    assert_eq!(h.metrics().retry_in, Some(wait));
    for next in expected {
        advance(wait).await;
        let _ = run(&mut svc, FAIL).await; // trial fails → reopen
        assert_eq!(h.state(), State::Open);
        wait = Duration::from_secs(next);
        assert_eq!(h.metrics().retry_in, Some(wait), "capped at 30 s");
    }
    // Recovery resets the growth.
    advance(wait).await;
    run(&mut svc, OK).await.unwrap();
    run(&mut svc, OK).await.unwrap();
    assert_eq!(h.state(), State::Closed);
    trip(&mut svc).await;
    assert_eq!(h.metrics().retry_in, Some(Duration::from_secs(10)));
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_open_durations_within_bounds() {
    let layer = base().open_duration_jitter(0.2).build().unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(scripted());
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        trip(&mut svc).await;
        let d = h.metrics().retry_in.unwrap();
        assert!(
            d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
            "{d:?}"
        );
        seen.insert(d);
        h.force_closed();
    }
    assert!(seen.len() > 1, "jitter must vary: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn half_open_success_ratio_tolerates_some_failures() {
    let layer = base()
        .half_open_max_calls(4)
        .half_open_success_ratio(0.5)
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(scripted());
    trip(&mut svc).await;
    advance(Duration::from_secs(10)).await;
    let _ = run(&mut svc, FAIL).await;
    let _ = run(&mut svc, FAIL).await;
    assert_eq!(h.state(), State::HalfOpen, "2 of 4 may fail");
    run(&mut svc, OK).await.unwrap();
    run(&mut svc, OK).await.unwrap();
    assert_eq!(h.state(), State::Closed);

    trip(&mut svc).await;
    advance(Duration::from_secs(10)).await;
    for _ in 0..3 {
        let _ = run(&mut svc, FAIL).await;
    }
    assert_eq!(
        h.state(),
        State::Open,
        "3 failures: 2 of 4 can no longer succeed"
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_reopens_after_max_dwell() {
    let layer = base()
        .half_open_max_calls(1)
        .half_open_max_duration(Duration::from_secs(5))
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(scripted());
    trip(&mut svc).await;
    advance(Duration::from_secs(10)).await;
    // A trial that hangs.
    let hang = Call {
        fail: false,
        delay: Duration::from_secs(3600),
    };
    let mut stuck = task::spawn(svc.ready().await.unwrap().call(hang));
    assert_pending!(stuck.poll());
    assert_eq!(h.state(), State::HalfOpen);
    assert!(
        run(&mut svc, OK).await.is_err(),
        "the one trial slot is taken"
    );
    advance(Duration::from_secs(5)).await;
    let open = is_open(run(&mut svc, OK).await);
    assert_eq!(open.state(), State::Open, "half-open gave up after 5 s");
    drop(stuck);
}

#[tokio::test(start_paused = true)]
async fn dropped_trial_frees_its_slot() {
    let layer = base().half_open_max_calls(1).build().unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(scripted());
    trip(&mut svc).await;
    advance(Duration::from_secs(10)).await;
    let slow = Call {
        fail: false,
        delay: Duration::from_secs(1),
    };
    let mut trial = task::spawn(svc.ready().await.unwrap().call(slow));
    assert_pending!(trial.poll());
    assert!(run(&mut svc, OK).await.is_err(), "slot taken");
    drop(trial); // the caller gave up
    run(&mut svc, OK).await.unwrap();
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn stale_outcomes_from_before_a_transition_are_ignored() {
    let layer = base().build().unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(scripted());
    let late = Call {
        fail: true,
        delay: Duration::from_secs(1),
    };
    let mut old: Vec<_> = Vec::new();
    for _ in 0..4 {
        let mut t = task::spawn(svc.ready().await.unwrap().call(late));
        assert_pending!(t.poll());
        old.push(t);
    }
    // An operator resets the breaker while those calls are in flight.
    h.force_closed();
    advance(Duration::from_secs(1)).await;
    for t in old {
        assert!(t.await.is_err());
    }
    assert_eq!(
        h.state(),
        State::Closed,
        "failures of the old epoch do not count"
    );
    assert_eq!(h.metrics().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn panicking_inner_service_counts_as_failure() {
    let layer = base().consecutive_failures(1).build().unwrap();
    let h = layer.handle();
    let svc = layer.layer(service_fn(|_: ()| async {
        if true {
            panic!("inner service panicked");
        }
        Ok::<(), BoxError>(())
    }));
    let res = tokio::spawn(svc.oneshot(())).await;
    assert!(res.unwrap_err().is_panic());
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn fallback_answers_while_open() {
    let layer = base()
        .build()
        .unwrap()
        .fallback(|req: Call, open: BreakerOpen| {
            assert!(req.fail);
            assert_eq!(open.state(), State::Open);
            Ok(())
        });
    let h = layer.handle();
    let mut svc = layer.layer(scripted());
    trip(&mut svc).await;
    assert_eq!(h.state(), State::Open);
    run(&mut svc, FAIL).await.expect("the fallback answered");
}

#[tokio::test(start_paused = true)]
async fn http_classifier_counts_5xx_not_4xx() {
    let layer = base()
        .build()
        .unwrap()
        .classifier(HttpClassifier::default());
    let h = layer.handle();
    let mut svc = layer.layer(service_fn(|status: u16| async move {
        Ok::<_, BoxError>(http::Response::builder().status(status).body(()).unwrap())
    }));
    for _ in 0..10 {
        svc.ready().await.unwrap().call(404).await.unwrap();
    }
    assert_eq!(h.state(), State::Closed);
    for _ in 0..5 {
        svc.ready().await.unwrap().call(503).await.unwrap();
    }
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn backpressure_mode_waits_in_poll_ready_and_wakes_for_the_trial() {
    let layer = base()
        .half_open_max_calls(1)
        .reject_mode(RejectMode::Backpressure)
        .build()
        .unwrap();
    let h = layer.handle();
    let (mock, mut handle) = mock::pair::<&'static str, &'static str>();
    handle.allow(100);
    let mut svc = mock::Spawn::new(layer.layer(mock));
    for _ in 0..4 {
        assert_ready_ok!(svc.poll_ready());
        let fut = svc.call("x");
        handle.next_request().await.unwrap().1.send_error("boom");
        assert!(fut.await.is_err());
    }
    assert_eq!(h.state(), State::Open);
    assert_pending!(svc.poll_ready());
    assert_eq!(
        h.metrics().rejected,
        0,
        "a caller waiting in poll_ready is not refused"
    );
    advance(Duration::from_secs(9)).await;
    assert!(!svc.is_woken());
    assert_pending!(svc.poll_ready());
    advance(Duration::from_secs(1)).await;
    assert!(svc.is_woken(), "woken when the open duration ends");
    assert_ready_ok!(svc.poll_ready());
    assert_eq!(h.state(), State::HalfOpen);

    // A clone waits for the trial slot, and is woken when it frees.
    let mut other = mock::Spawn::new(svc.get_ref().clone());
    assert_pending!(other.poll_ready());
    let trial = svc.call("trial");
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error("still down");
    assert!(trial.await.is_err());
    assert_eq!(h.state(), State::Open);
    assert!(other.is_woken());
    assert_pending!(other.poll_ready(), "open again: waits for the next trial");
}

#[tokio::test(start_paused = true)]
async fn backpressure_reservation_is_released_on_drop() {
    let layer = base()
        .half_open_max_calls(1)
        .reject_mode(RejectMode::Backpressure)
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(scripted());
    trip(&mut svc).await;
    advance(Duration::from_secs(10)).await;
    let mut a = mock::Spawn::new(svc.clone());
    assert_ready_ok!(a.poll_ready()); // reserves the only trial slot
    let mut b = mock::Spawn::new(svc.clone());
    assert_pending!(b.poll_ready());
    drop(a);
    assert!(b.is_woken());
    assert_ready_ok!(b.poll_ready());
    assert_eq!(h.state(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn handle_forces_states_and_reports_changes() {
    let layer = base().build().unwrap();
    let h = layer.handle();
    let mut rx = h.subscribe();
    let mut svc = layer.layer(scripted());

    h.force_open();
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), State::ForcedOpen);
    let open = is_open(run(&mut svc, OK).await);
    assert_eq!(open.state(), State::ForcedOpen);
    advance(Duration::from_secs(3600)).await;
    assert!(
        run(&mut svc, OK).await.is_err(),
        "forced open does not time out"
    );

    h.disable();
    for _ in 0..10 {
        let err = run(&mut svc, FAIL).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "boom",
            "the call reached the inner service"
        );
    }
    assert_eq!(h.state(), State::Disabled);
    assert_eq!(h.metrics().calls, 0, "disabled records nothing");

    h.metrics_only();
    for _ in 0..10 {
        let _ = run(&mut svc, FAIL).await;
    }
    assert_eq!(h.state(), State::MetricsOnly, "never trips");
    assert_eq!(h.metrics().failures, 10);

    h.force_closed();
    assert_eq!(*rx.borrow_and_update(), State::Closed);
    trip(&mut svc).await;
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_downcastable() {
    let layer = base().build().unwrap();
    let mut svc = layer.layer(service_fn(|_: ()| async {
        Err::<(), _>(std::io::Error::other("disk on fire"))
    }));
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<std::io::Error>().unwrap().to_string(),
        "disk on fire"
    );
}

#[tokio::test(start_paused = true)]
async fn reconfigure_changes_thresholds_live() {
    let layer = base().build().unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(scripted());
    h.reconfigure(&base().failure_rate_threshold(0.9)).unwrap();
    for c in [FAIL, FAIL, FAIL, OK] {
        let _ = run(&mut svc, c).await;
    }
    assert_eq!(h.state(), State::Closed, "75% < 90%");
    h.reconfigure(&base().failure_rate_threshold(0.7)).unwrap();
    let _ = run(&mut svc, FAIL).await;
    assert_eq!(h.state(), State::Open, "80% ≥ 70%");

    let err = h.reconfigure(&base().count_window(50)).unwrap_err();
    assert_eq!(err.field(), "window");
    let err = h
        .reconfigure(&base().failure_rate_threshold(2.0))
        .unwrap_err();
    assert_eq!(err.field(), "failure_rate_threshold");
    assert_eq!(h.config(), base().failure_rate_threshold(0.7));
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_are_independent() {
    let layer = base()
        .build_keyed(|c: &(&'static str, Call)| c.0, KeyedConfig::default())
        .unwrap();
    let keys = layer.handle();
    let mut svc = layer.layer(service_fn(|(_, c): (&'static str, Call)| async move {
        if c.fail { Err("boom") } else { Ok(()) }
    }));
    for _ in 0..4 {
        let _ = svc.ready().await.unwrap().call(("a", FAIL)).await;
    }
    let a = svc.ready().await.unwrap().call(("a", OK)).await;
    assert!(a.unwrap_err().is::<BreakerOpen>());
    svc.ready().await.unwrap().call(("b", OK)).await.unwrap();
    assert_eq!(keys.get(&"a").unwrap().state(), State::Open);
    assert_eq!(keys.get(&"b").unwrap().state(), State::Closed);
    assert_eq!(keys.entries().len(), 2);
    assert!(keys.get(&"c").is_none());
}

#[tokio::test(start_paused = true)]
async fn keyed_reconfigure_reaches_live_and_new_breakers() {
    let layer = base()
        .build_keyed(|c: &(&'static str, Call)| c.0, KeyedConfig::default())
        .unwrap();
    let keys = layer.handle();
    let mut svc = layer.layer(service_fn(|(_, c): (&'static str, Call)| async move {
        if c.fail { Err("boom") } else { Ok(()) }
    }));
    svc.ready().await.unwrap().call(("a", OK)).await.unwrap();
    keys.reconfigure(&base().failure_rate_threshold(0.9))
        .unwrap();
    for key in ["a", "b"] {
        for c in [FAIL, FAIL, FAIL, OK] {
            let _ = svc.ready().await.unwrap().call((key, c)).await;
        }
    }
    // "a": 3 of 5 failed (60%); "b", created after: 3 of 4 (75%); both < 90%.
    assert_eq!(keys.get(&"a").unwrap().state(), State::Closed);
    assert_eq!(keys.get(&"b").unwrap().state(), State::Closed);
    assert_eq!(
        keys.get(&"b").unwrap().config(),
        base().failure_rate_threshold(0.9)
    );
    let err = keys.reconfigure(&base().count_window(50)).unwrap_err();
    assert_eq!(err.field(), "window");
}

#[test]
fn keyed_breakers_refuse_backpressure() {
    let err = base()
        .reject_mode(RejectMode::Backpressure)
        .build_keyed(|_: &()| 0u8, KeyedConfig::default())
        .unwrap_err();
    assert_eq!(err.field(), "reject_mode");
}

#[test]
fn invalid_config_names_the_field() {
    let cases: Vec<(BreakerConfig, &str)> = vec![
        (
            BreakerConfig::new().failure_rate_threshold(1.5),
            "failure_rate_threshold",
        ),
        (
            BreakerConfig::new().failure_rate_threshold(-0.1),
            "failure_rate_threshold",
        ),
        (
            BreakerConfig::new().slow_calls(Duration::from_secs(1), 2.0),
            "slow_call_rate_threshold",
        ),
        (
            BreakerConfig::new().slow_calls(Duration::ZERO, 0.5),
            "slow_call_duration",
        ),
        (BreakerConfig::new().count_window(0), "window.size"),
        (BreakerConfig::new().count_window(2_000_000), "window.size"),
        (
            BreakerConfig::new().count_window(10).minimum_calls(11),
            "minimum_calls",
        ),
        (
            BreakerConfig::new().time_window(Duration::ZERO, 10),
            "window.length",
        ),
        (
            BreakerConfig::new().time_window(Duration::from_secs(10), 0),
            "window.buckets",
        ),
        (
            BreakerConfig::new().time_window(Duration::from_secs(10), 100_000),
            "window.buckets",
        ),
        (
            BreakerConfig::new().half_open_max_calls(0),
            "half_open_max_calls",
        ),
        (
            BreakerConfig::new().half_open_max_calls(5000),
            "half_open_max_calls",
        ),
        (
            BreakerConfig::new().half_open_success_ratio(1.1),
            "half_open_success_ratio",
        ),
        (
            BreakerConfig::new().half_open_max_duration(Duration::ZERO),
            "half_open_max_duration",
        ),
        (
            BreakerConfig::new().open_duration(Duration::ZERO),
            "open_duration",
        ),
        (
            BreakerConfig::new().open_duration_growth(0.5, Duration::from_secs(60)),
            "open_duration_multiplier",
        ),
        (
            BreakerConfig::new().open_duration_growth(2.0, Duration::from_secs(1)),
            "max_open_duration",
        ),
        (
            BreakerConfig::new().open_duration_jitter(1.5),
            "open_duration_jitter",
        ),
        (
            BreakerConfig::new().consecutive_failures(0),
            "consecutive_failures",
        ),
    ];
    for (cfg, field) in cases {
        let err = cfg.build().expect_err(field);
        assert_eq!(err.field(), field, "{err}");
    }
    assert!(BreakerConfig::new().build().is_ok(), "defaults are valid");
}

#[test]
fn config_loads_from_toml_and_refuses_unknown_keys() {
    let cfg: BreakerConfig = toml::from_str(
        r#"
        name = "payments"
        failure_rate_threshold = 0.25
        minimum_calls = 10
        slow_call_duration = "800ms"
        slow_call_rate_threshold = 0.5
        consecutive_failures = 5
        open_duration = "5s"
        max_open_duration = "1m"
        open_duration_multiplier = 2.0
        half_open_max_calls = 1
        reject_mode = "backpressure"
        window = { kind = "time", length = "10s", buckets = 10 }
        "#,
    )
    .unwrap();
    assert_eq!(
        cfg,
        BreakerConfig::new()
            .name("payments")
            .failure_rate_threshold(0.25)
            .minimum_calls(10)
            .slow_calls(Duration::from_millis(800), 0.5)
            .consecutive_failures(5)
            .open_duration(Duration::from_secs(5))
            .open_duration_growth(2.0, Duration::from_secs(60))
            .half_open_max_calls(1)
            .reject_mode(RejectMode::Backpressure)
            .time_window(Duration::from_secs(10), 10)
    );
    let err = toml::from_str::<BreakerConfig>("failure_rate = 0.5").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let err = toml::from_str::<BreakerConfig>("open_duration = \"5 parsecs\"").unwrap_err();
    assert!(err.to_string().contains("unknown unit"), "{err}");
}

#[test]
fn layers_and_services_are_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>(_: &T) {}
    let layer: BreakerLayer = BreakerConfig::new().build().unwrap();
    check(&layer);
    let svc = layer.layer(scripted());
    check(&svc);
    let keyed = BreakerConfig::new()
        .build_keyed(|_: &Call| 1u8, KeyedConfig::default())
        .unwrap();
    check(&keyed);
    check(&keyed.layer(scripted()));
    let calls = Arc::new(AtomicUsize::new(0));
    calls.fetch_add(1, Ordering::Relaxed);
}

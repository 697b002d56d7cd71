//! Behaviour of the retry layer, on tokio's paused clock.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_core::BoxError;
use rampart_core::classify::{Decision, classify_fn};
use rampart_retry::{
    Backoff, BudgetConfig, DeadlineExceeded, RetryConfig, RetryLayer, RetryOverride, TryTimeout,
};
use tokio::time::{Instant, sleep};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

const MS: Duration = Duration::from_millis(1);

type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// What the scripted service does on one call.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok,
    Fail(&'static str),
    /// Answers after this long.
    Slow(Duration),
    /// Never answers.
    Hang,
}

/// The scripted service's log: when each call arrived, since the start.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Duration>>>);

impl Log {
    fn times(&self) -> Vec<Duration> {
        self.0.lock().unwrap().clone()
    }
    fn calls(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A service answering from `script` in turn (then `Ok` forever).
fn scripted(
    script: &[Answer],
) -> (
    impl Service<u32, Response = u32, Error = BoxError, Future = BoxFut<u32>> + Clone + use<>,
    Log,
) {
    let start = Instant::now();
    let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
    let log = Log::default();
    let seen = log.clone();
    let svc = service_fn(move |n: u32| -> BoxFut<u32> {
        seen.0.lock().unwrap().push(start.elapsed());
        let answer = script.lock().unwrap().pop_front().unwrap_or(Answer::Ok);
        Box::pin(async move {
            match answer {
                Answer::Ok => Ok(n),
                Answer::Fail(e) => Err(e.into()),
                Answer::Slow(d) => {
                    sleep(d).await;
                    Ok(n)
                }
                Answer::Hang => std::future::pending().await,
            }
        })
    });
    (svc, log)
}

fn config() -> RetryConfig {
    RetryConfig::new()
        .no_budget()
        .backoff(Backoff::Constant { delay: 10 * MS })
        .seed(7)
}

fn inner_error(err: &BoxError) -> String {
    err.to_string()
}

// === backoff ===

#[tokio::test(start_paused = true)]
async fn constant_backoff_spaces_tries_exactly() {
    let (svc, log) = scripted(&[Answer::Fail("a"), Answer::Fail("b"), Answer::Fail("c")]);
    let svc = config().max_attempts(4).build().unwrap().layer(svc);
    assert_eq!(svc.oneshot(5).await.unwrap(), 5);
    assert_eq!(log.times(), [Duration::ZERO, 10 * MS, 20 * MS, 30 * MS]);
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_doubles_up_to_the_cap() {
    let (svc, log) = scripted(&[Answer::Fail("x"); 5]);
    let svc = config()
        .max_attempts(5)
        .backoff(Backoff::Exponential {
            base: 100 * MS,
            cap: 300 * MS,
        })
        .build()
        .unwrap()
        .layer(svc);
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(inner_error(&err), "x", "the last real error comes back");
    // delays 100, 200, 300 (capped), 300
    assert_eq!(
        log.times(),
        [Duration::ZERO, 100 * MS, 300 * MS, 600 * MS, 900 * MS]
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_repeats_with_a_seed_and_stays_bounded() {
    async fn run(seed: u64) -> Vec<Duration> {
        let (svc, log) = scripted(&[Answer::Fail("x"); 4]);
        let svc = RetryConfig::new()
            .no_budget()
            .max_attempts(5)
            .backoff(Backoff::FullJitter {
                base: 100 * MS,
                cap: 1000 * MS,
            })
            .seed(seed)
            .build()
            .unwrap()
            .layer(svc);
        svc.oneshot(1).await.unwrap();
        let t = log.times();
        t.windows(2).map(|w| w[1] - w[0]).collect()
    }
    let a = run(11).await;
    assert_eq!(a, run(11).await, "same seed, same delays");
    assert_ne!(a, run(12).await, "another seed, other delays");
    for (i, d) in a.iter().enumerate() {
        assert!(*d <= 100 * MS * (1 << i), "retry {}: {d:?}", i + 1);
    }
}

#[tokio::test(start_paused = true)]
async fn one_attempt_means_no_retry() {
    let (svc, log) = scripted(&[Answer::Fail("once")]);
    let svc = config().max_attempts(1).build().unwrap().layer(svc);
    assert_eq!(inner_error(&svc.oneshot(1).await.unwrap_err()), "once");
    assert_eq!(log.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_only_what_the_classifier_allows() {
    let (svc, log) = scripted(&[Answer::Fail("fatal"), Answer::Fail("x")]);
    let never_fatal = classify_fn(|r: &Result<u32, BoxError>| match r {
        Err(e) if e.to_string() == "fatal" => {
            Decision::failure().with_retry(rampart_core::RetryHint::Never)
        }
        Err(_) => Decision::failure(),
        Ok(_) => Decision::success(),
    });
    let svc = config()
        .max_attempts(3)
        .build()
        .unwrap()
        .classifier(never_fatal)
        .layer(svc);
    assert_eq!(inner_error(&svc.oneshot(1).await.unwrap_err()), "fatal");
    assert_eq!(log.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn replays_the_same_request_and_waits_for_readiness() {
    let layer = config().max_attempts(2).build().unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<&'static str, &'static str, _>(layer);
    handle.allow(1);
    tokio_test::assert_ready_ok!(svc.poll_ready());
    let call = tokio::spawn(svc.call("hello"));
    assert_request_eq!(handle, "hello").send_error("nope");
    // The retry waits out its backoff, then for readiness.
    sleep(50 * MS).await;
    assert!(!call.is_finished());
    handle.allow(1);
    assert_request_eq!(handle, "hello").send_response("world");
    assert_eq!(call.await.unwrap().unwrap(), "world");
}

// === Retry-After ===

type HttpFut = BoxFut<http::Response<()>>;

fn http_service(
    script: &[(u16, Option<&'static str>)],
) -> (
    impl Service<http::Request<()>, Response = http::Response<()>, Error = BoxError, Future = HttpFut>
    + Clone
    + use<>,
    Log,
) {
    let start = Instant::now();
    let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
    let log = Log::default();
    let seen = log.clone();
    let svc = service_fn(move |_req: http::Request<()>| -> HttpFut {
        seen.0.lock().unwrap().push(start.elapsed());
        let (status, retry_after) = script.lock().unwrap().pop_front().unwrap_or((200, None));
        Box::pin(async move {
            let mut res = http::Response::builder().status(status);
            if let Some(v) = retry_after {
                res = res.header("retry-after", v);
            }
            Ok(res.body(()).unwrap())
        })
    });
    (svc, log)
}

fn get() -> http::Request<()> {
    http::Request::get("/").body(()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn retry_after_wins_when_longer_than_backoff() {
    let (svc, log) = http_service(&[(503, Some("3")), (429, None), (200, None)]);
    let svc = config()
        .max_attempts(3)
        .build()
        .unwrap()
        .for_http()
        .layer(svc);
    assert_eq!(svc.oneshot(get()).await.unwrap().status(), 200);
    // 3 s of pushback, then our own 10 ms
    assert_eq!(log.times(), [Duration::ZERO, 3000 * MS, 3010 * MS]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_cap_is_not_retried() {
    let (svc, log) = http_service(&[(503, Some("60"))]);
    let svc = config()
        .max_attempts(3)
        .max_retry_after(Duration::from_secs(30))
        .build()
        .unwrap()
        .for_http()
        .layer(svc);
    let started = Instant::now();
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(res.status(), 503, "the response goes back as it is");
    assert_eq!(res.headers()["retry-after"], "60");
    assert_eq!(log.calls(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO, "not waited on");
}

#[tokio::test(start_paused = true)]
async fn post_is_not_retried_while_get_and_keyed_post_are() {
    let (svc, log) = http_service(&[(503, None), (503, None), (200, None)]);
    let svc = config()
        .max_attempts(2)
        .build()
        .unwrap()
        .for_http()
        .layer(svc);
    let post = http::Request::post("/").body(()).unwrap();
    assert_eq!(svc.clone().oneshot(post).await.unwrap().status(), 503);
    assert_eq!(log.calls(), 1, "POST went once");
    assert_eq!(svc.clone().oneshot(get()).await.unwrap().status(), 200);
    assert_eq!(log.calls(), 3, "GET was retried");

    let (svc, log) = http_service(&[(503, None)]);
    let svc = config()
        .max_attempts(2)
        .build()
        .unwrap()
        .for_http()
        .layer(svc);
    let keyed = http::Request::post("/")
        .header("idempotency-key", "k1")
        .body(())
        .unwrap();
    assert_eq!(svc.oneshot(keyed).await.unwrap().status(), 200);
    assert_eq!(
        log.calls(),
        2,
        "a POST with an Idempotency-Key is replayable"
    );
}

#[tokio::test(start_paused = true)]
async fn non_retryable_status_is_not_retried() {
    let (svc, log) = http_service(&[(500, None)]);
    let svc = config()
        .max_attempts(3)
        .build()
        .unwrap()
        .for_http()
        .layer(svc);
    assert_eq!(svc.oneshot(get()).await.unwrap().status(), 500);
    assert_eq!(log.calls(), 1);
}

// === timeouts and deadline ===

#[tokio::test(start_paused = true)]
async fn per_try_timeout_cancels_and_retries() {
    let (svc, log) = scripted(&[Answer::Hang, Answer::Slow(50 * MS)]);
    let svc = config()
        .max_attempts(2)
        .per_try_timeout(100 * MS)
        .build()
        .unwrap()
        .layer(svc);
    let started = Instant::now();
    assert_eq!(svc.oneshot(3).await.unwrap(), 3);
    assert_eq!(log.times(), [Duration::ZERO, 110 * MS]);
    assert_eq!(started.elapsed(), 160 * MS);
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_is_returned_when_tries_run_out() {
    let (svc, log) = scripted(&[Answer::Hang, Answer::Hang]);
    let svc = config()
        .max_attempts(2)
        .per_try_timeout(100 * MS)
        .build()
        .unwrap()
        .layer(svc);
    let err = svc.oneshot(3).await.unwrap_err();
    let timeout = err.downcast_ref::<TryTimeout>().expect("a TryTimeout");
    assert_eq!(timeout.timeout(), 100 * MS);
    assert_eq!(err.to_string(), "retry attempt timed out after 100ms");
    assert_eq!(log.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_would_end_past_the_deadline_is_not_started() {
    let (svc, log) = scripted(&[Answer::Fail("first"), Answer::Fail("second")]);
    let svc = config()
        .max_attempts(5)
        .backoff(Backoff::Exponential {
            base: 100 * MS,
            cap: Duration::from_secs(10),
        })
        .deadline(250 * MS)
        .build()
        .unwrap()
        .layer(svc);
    let started = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    // tries at 0 and 100 ms; the next would start at 300 ms > 250 ms
    assert_eq!(inner_error(&err), "second", "the last real error");
    assert!(err.downcast_ref::<DeadlineExceeded>().is_none());
    assert_eq!(log.times(), [Duration::ZERO, 100 * MS]);
    assert_eq!(started.elapsed(), 100 * MS, "gave up at once, no waiting");
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cancels_a_try_in_flight() {
    let (svc, _log) = scripted(&[Answer::Hang]);
    let svc = config()
        .max_attempts(3)
        .deadline(200 * MS)
        .build()
        .unwrap()
        .layer(svc);
    let started = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    let exceeded = err
        .downcast_ref::<DeadlineExceeded>()
        .expect("DeadlineExceeded");
    assert_eq!(exceeded.deadline(), 200 * MS);
    assert_eq!(err.to_string(), "retry deadline of 200ms exceeded");
    assert_eq!(started.elapsed(), 200 * MS);
}

// === budget ===

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_returns_the_last_real_error() {
    // No ratio, a floor of 1 retry per second over 1 s: one retry per window.
    let budget = BudgetConfig::new()
        .ratio(0.0)
        .min_per_second(1)
        .window(Duration::from_secs(1), 10)
        .build()
        .unwrap();
    let (a, log_a) = scripted(&[Answer::Fail("a1"), Answer::Fail("a2")]);
    let (b, log_b) = scripted(&[Answer::Fail("b1"), Answer::Fail("b2")]);
    let layer = config().max_attempts(3).build().unwrap();
    let a = layer.clone().with_budget(budget.clone()).layer(a);
    let b = layer.with_budget(budget.clone()).layer(b);

    // a spends the only retry of the window: two tries, then the budget is out.
    let err = a.oneshot(1).await.unwrap_err();
    assert_eq!(inner_error(&err), "a2");
    assert_eq!(log_a.calls(), 2);
    // b shares the budget: its first error comes back, never a budget error.
    let err = b.clone().oneshot(1).await.unwrap_err();
    assert_eq!(inner_error(&err), "b1");
    assert_eq!(log_b.calls(), 1);
    let snap = budget.snapshot();
    assert_eq!((snap.first_tries, snap.retries, snap.available), (2, 1, 0));

    // A window later the retry is paid for again.
    sleep(Duration::from_secs(1)).await;
    assert_eq!(b.oneshot(1).await.unwrap(), 1);
    assert_eq!(log_b.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_ratio_pays_for_retries() {
    // 50 % of first tries, no floor.
    let budget = BudgetConfig::new()
        .ratio(0.5)
        .min_per_second(0)
        .build()
        .unwrap();
    let (svc, log) = scripted(&[]);
    let layer = config()
        .max_attempts(2)
        .build()
        .unwrap()
        .with_budget(budget.clone());
    let ok = layer.layer(svc);
    for _ in 0..4 {
        ok.clone().oneshot(1).await.unwrap();
    }
    assert_eq!(log.calls(), 4);
    // 4 first tries pay for 2 retries (the failing calls add 2 more first tries)
    let (failing, log) = scripted(&[Answer::Fail("x"); 10]);
    let failing = layer.layer(failing);
    for _ in 0..2 {
        let _ = failing.clone().oneshot(1).await;
    }
    assert_eq!(log.calls(), 4, "two calls, each retried once");
    assert_eq!(budget.snapshot().available, 1);
    let _ = failing.clone().oneshot(1).await;
    let _ = failing.clone().oneshot(1).await;
    assert_eq!(budget.snapshot().retries, 4);
    assert_eq!(budget.snapshot().available, 0);
}

#[tokio::test(start_paused = true)]
async fn a_call_that_may_not_retry_does_not_deposit() {
    let budget = BudgetConfig::new().build().unwrap();
    for (attempts, deposits) in [(1, 0), (2, 1)] {
        let (svc, _) = scripted(&[]);
        let svc = config()
            .max_attempts(attempts)
            .build()
            .unwrap()
            .with_budget(budget.clone())
            .layer(svc);
        svc.oneshot(1).await.unwrap();
        assert_eq!(
            budget.snapshot().first_tries,
            deposits,
            "max_attempts {attempts}"
        );
    }
}

// === per-request overrides ===

#[tokio::test(start_paused = true)]
async fn overrides_in_extensions_change_attempts_and_deadline() {
    let (svc, log) = http_service(&[(503, None), (503, None), (503, None)]);
    let svc = config()
        .max_attempts(3)
        .build()
        .unwrap()
        .for_http()
        .layer(svc);
    let mut once = get();
    once.extensions_mut().insert(RetryOverride {
        max_attempts: Some(1),
        deadline: None,
    });
    assert_eq!(svc.clone().oneshot(once).await.unwrap().status(), 503);
    assert_eq!(log.calls(), 1);

    let mut short = get();
    short.extensions_mut().insert(RetryOverride {
        max_attempts: None,
        deadline: Some(15 * MS),
    });
    // one retry after 10 ms fits in 15 ms, the next (at 20 ms) does not
    assert_eq!(svc.clone().oneshot(short).await.unwrap().status(), 503);
    assert_eq!(log.calls(), 3);
}

// === the types ===

#[test]
fn types_are_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    fn send_sync<T: Send + Sync + 'static>() {}
    check::<RetryLayer>();
    check::<rampart_retry::RetryBudget>();
    check::<RetryConfig>();
    check::<
        rampart_retry::Retry<
            tower::util::BoxCloneSyncService<u32, u32, BoxError>,
            rampart_core::classify::ResultClassifier,
            rampart_retry::AnyRequest,
        >,
    >();
    send_sync::<TryTimeout>();
    send_sync::<DeadlineExceeded>();
    fn future_is_send<F: Future + Send>(_: &F) {}
    let (svc, _) = scripted(&[]);
    let svc = config().build().unwrap().layer(svc);
    future_is_send(&svc.oneshot(1));
}

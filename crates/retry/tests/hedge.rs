//! Hedging: timing, cancellation, idempotency, budget and the tracked
//! percentile, on tokio's paused clock.

mod common;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_core::BoxError;
use rampart_core::testing::TestRecorder;
use rampart_retry::{
    Backoff, BudgetConfig, HedgeConfig, HedgeDelay, HedgeLayer, RetryBudget, RetryConfig,
};
use tokio::time::{Instant, sleep, timeout};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_test::mock;

const MS: Duration = Duration::from_millis(1);

type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// What the scripted service does on one call.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Succeeds after this long.
    Ok(Duration),
    /// Fails after this long.
    Fail(Duration),
    /// Never answers.
    Hang,
}

/// One call the scripted service received.
#[derive(Clone, Copy, Debug, Default)]
struct Call {
    /// When it arrived, since the service was made.
    at: Duration,
    /// Its future was dropped before it answered.
    cancelled: bool,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Call>>>);

impl Log {
    fn times(&self) -> Vec<Duration> {
        self.0.lock().unwrap().iter().map(|c| c.at).collect()
    }
    fn cancelled(&self) -> Vec<bool> {
        self.0.lock().unwrap().iter().map(|c| c.cancelled).collect()
    }
    fn calls(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Marks its call cancelled when dropped before `answered`.
struct Guard {
    log: Log,
    call: usize,
    answered: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.answered {
            self.log.0.lock().unwrap()[self.call].cancelled = true;
        }
    }
}

/// A service answering from `script` in turn (then hanging), with the
/// number of the call (1 for the first) made into a response by `wrap`.
fn scripted_with<Req, T>(
    script: &[Answer],
    wrap: fn(u32) -> T,
) -> (
    impl Service<Req, Response = T, Error = BoxError, Future = BoxFut<T>> + Clone + use<Req, T>,
    Log,
)
where
    T: Send + 'static,
{
    let start = Instant::now();
    let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
    let log = Log::default();
    let seen = log.clone();
    let svc = service_fn(move |_: Req| -> BoxFut<T> {
        let call = {
            let mut calls = seen.0.lock().unwrap();
            calls.push(Call {
                at: start.elapsed(),
                cancelled: false,
            });
            calls.len() - 1
        };
        let answer = script.lock().unwrap().pop_front().unwrap_or(Answer::Hang);
        let guard = Guard {
            log: seen.clone(),
            call,
            answered: false,
        };
        let n = call as u32 + 1;
        Box::pin(async move {
            // Move the whole guard in (not just the field set below), so
            // that it drops with the future.
            let mut guard = guard;
            let result = match answer {
                Answer::Ok(d) => {
                    sleep(d).await;
                    Ok(wrap(n))
                }
                Answer::Fail(d) => {
                    sleep(d).await;
                    Err(format!("call {n} failed").into())
                }
                Answer::Hang => std::future::pending().await,
            };
            guard.answered = true;
            result
        })
    });
    (svc, log)
}

fn scripted(
    script: &[Answer],
) -> (
    impl Service<u32, Response = u32, Error = BoxError, Future = BoxFut<u32>> + Clone + use<>,
    Log,
) {
    scripted_with(script, |n| n)
}

/// Hedge after 50 ms, with a budget that never runs out in these tests.
fn fixed() -> HedgeConfig {
    HedgeConfig::new()
        .delay(HedgeDelay::Fixed(50 * MS))
        .budget(BudgetConfig::new().ratio(10.0).min_per_second(1000))
}

/// Calls `svc` once and says what came back and when.
async fn timed<S, Req>(svc: S, req: Req) -> (Result<S::Response, S::Error>, Duration)
where
    S: Service<Req>,
{
    let start = Instant::now();
    let result = svc.oneshot(req).await;
    (result, start.elapsed())
}

// === timing ===

#[tokio::test(start_paused = true)]
async fn no_hedge_when_the_first_attempt_answers_before_the_delay() {
    let (svc, log) = scripted(&[Answer::Ok(49 * MS)]);
    let layer = fixed().build().unwrap();
    let (result, took) = timed(layer.layer(svc), 0).await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(took, 49 * MS);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(log.calls(), 1, "no hedge, not even later");
    let budget = layer.budget().snapshot();
    assert_eq!((budget.first_tries, budget.retries), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_hedge_is_sent_exactly_at_the_delay() {
    let (svc, log) = scripted(&[Answer::Ok(80 * MS), Answer::Ok(100 * MS)]);
    let layer = fixed().build().unwrap();
    let (result, took) = timed(layer.layer(svc), 0).await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(took, 80 * MS);
    assert_eq!(log.times(), [Duration::ZERO, 50 * MS]);
    let budget = layer.budget().snapshot();
    assert_eq!(
        (budget.first_tries, budget.retries),
        (1, 1),
        "the hedge was paid for"
    );
}

#[tokio::test(start_paused = true)]
async fn the_hedge_wins_and_the_first_attempt_is_cancelled() {
    let (svc, log) = scripted(&[Answer::Hang, Answer::Ok(10 * MS)]);
    let (result, took) = timed(fixed().build().unwrap().layer(svc), 0).await;
    assert_eq!(result.unwrap(), 2, "the hedge's answer");
    assert_eq!(took, 60 * MS);
    assert_eq!(log.cancelled(), [true, false]);
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_wins_and_the_hedge_is_cancelled() {
    let (svc, log) = scripted(&[Answer::Ok(70 * MS), Answer::Ok(100 * MS)]);
    let (result, took) = timed(fixed().build().unwrap().layer(svc), 0).await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(took, 70 * MS);
    assert_eq!(log.cancelled(), [false, true]);
}

#[tokio::test(start_paused = true)]
async fn a_failure_waits_for_the_other_attempt() {
    // The first attempt fails at 60 ms; the hedge (sent at 50) answers at 70.
    let (svc, log) = scripted(&[Answer::Fail(60 * MS), Answer::Ok(20 * MS)]);
    let (result, took) = timed(fixed().build().unwrap().layer(svc), 0).await;
    assert_eq!(result.unwrap(), 2);
    assert_eq!(took, 70 * MS);
    assert_eq!(log.cancelled(), [false, false]);
}

#[tokio::test(start_paused = true)]
async fn a_failure_before_the_delay_is_returned_without_a_hedge() {
    let (svc, log) = scripted(&[Answer::Fail(10 * MS)]);
    let (result, took) = timed(fixed().build().unwrap().layer(svc), 0).await;
    assert_eq!(result.unwrap_err().to_string(), "call 1 failed");
    assert_eq!(took, 10 * MS);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(log.calls(), 1, "hedging does not retry failures");
}

#[tokio::test(start_paused = true)]
async fn when_every_attempt_fails_the_last_failure_comes_back() {
    // The hedge fails first (at 60 ms), the first attempt last (at 80 ms).
    let (svc, _) = scripted(&[Answer::Fail(80 * MS), Answer::Fail(10 * MS)]);
    let (result, took) = timed(fixed().build().unwrap().layer(svc), 0).await;
    assert_eq!(result.unwrap_err().to_string(), "call 1 failed");
    assert_eq!(took, 80 * MS);
}

#[tokio::test(start_paused = true)]
async fn up_to_max_hedges_each_one_delay_apart() {
    let (svc, log) = scripted(&[Answer::Hang, Answer::Hang, Answer::Ok(10 * MS)]);
    let svc = fixed().max_hedges(2).build().unwrap().layer(svc);
    let (result, took) = timed(svc, 0).await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(took, 110 * MS);
    assert_eq!(log.times(), [Duration::ZERO, 50 * MS, 100 * MS]);
    assert_eq!(log.cancelled(), [true, true, false]);

    // With one hedge allowed, nothing follows it.
    let (svc, log) = scripted(&[Answer::Hang, Answer::Hang, Answer::Ok(MS)]);
    let svc = fixed().build().unwrap().layer(svc);
    assert!(
        timeout(Duration::from_secs(1), svc.oneshot(0))
            .await
            .is_err()
    );
    assert_eq!(log.times(), [Duration::ZERO, 50 * MS]);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_cancels_every_attempt() {
    let (svc, log) = scripted(&[Answer::Hang, Answer::Hang]);
    let svc = fixed().build().unwrap().layer(svc);
    assert!(timeout(60 * MS, svc.oneshot(0)).await.is_err());
    assert_eq!(log.cancelled(), [true, true]);
}

// === readiness ===

#[tokio::test(start_paused = true)]
async fn a_hedge_waits_for_readiness_without_holding_up_the_first_attempt() {
    let (mock, mut handle) = mock::pair::<u32, u32>();
    handle.allow(1);
    let mut svc = fixed().build().unwrap().layer(mock);
    let start = Instant::now();
    svc.ready().await.unwrap();
    let call = tokio::spawn(svc.call(7));
    let (req, first) = handle.next_request().await.unwrap();
    assert_eq!(req, 7);

    // The hedge is due at 50 ms but the service has no capacity until 80.
    sleep(80 * MS).await;
    handle.allow(1);
    let (req, hedge) = handle.next_request().await.unwrap();
    assert_eq!((req, start.elapsed()), (7, 80 * MS));
    hedge.send_response(2);
    assert_eq!(call.await.unwrap().unwrap(), 2);
    first.send_response(1); // ignored: the call is over

    // When the first attempt answers while the service is still not ready,
    // no hedge is sent.
    let (mock, mut handle) = mock::pair::<u32, u32>();
    handle.allow(1);
    let mut svc = fixed().build().unwrap().layer(mock);
    svc.ready().await.unwrap();
    let call = tokio::spawn(svc.call(8));
    let (_, first) = handle.next_request().await.unwrap();
    sleep(80 * MS).await;
    first.send_response(1);
    assert_eq!(call.await.unwrap().unwrap(), 1);
    handle.allow(1);
    assert!(
        timeout(MS, handle.next_request()).await.is_err(),
        "no hedge"
    );
}

// === idempotency ===

#[tokio::test(start_paused = true)]
async fn http_hedges_only_idempotent_requests() {
    let response = |n: u32| http::Response::new(n);
    let hedged = |req: http::Request<()>| async move {
        let (svc, log) = scripted_with(&[Answer::Ok(200 * MS), Answer::Ok(MS)], response);
        let svc = fixed().build().unwrap().for_http().layer(svc);
        let body = svc.oneshot(req).await.unwrap().into_body();
        (body, log.calls())
    };
    let post = http::Request::post("/orders").body(()).unwrap();
    assert_eq!(hedged(post).await, (1, 1), "a POST is never hedged");
    let keyed = http::Request::post("/orders")
        .header("idempotency-key", "k-1")
        .body(())
        .unwrap();
    assert_eq!(
        hedged(keyed).await,
        (2, 2),
        "unless it has an Idempotency-Key"
    );
    let get = http::Request::get("/orders").body(()).unwrap();
    assert_eq!(hedged(get).await, (2, 2));
}

#[tokio::test(start_paused = true)]
async fn http_5xx_is_a_failure_that_waits_for_the_hedge() {
    let status = |n: u32| {
        let code = if n == 1 { 503 } else { 200 };
        http::Response::builder().status(code).body(n).unwrap()
    };
    let (svc, _) = scripted_with(&[Answer::Ok(60 * MS), Answer::Ok(30 * MS)], status);
    let svc = fixed().build().unwrap().for_http().layer(svc);
    let req = http::Request::get("/").body(()).unwrap();
    let (result, took) = timed(svc, req).await;
    let res = result.unwrap();
    assert_eq!((res.status().as_u16(), *res.body()), (200, 2));
    assert_eq!(took, 80 * MS);
}

// === budget ===

/// A budget of `n` withdrawals per second, whatever the traffic.
fn tokens(n: u32) -> BudgetConfig {
    BudgetConfig::new()
        .ratio(0.0)
        .min_per_second(n)
        .window(Duration::from_secs(1), 1)
}

#[tokio::test(start_paused = true)]
async fn no_hedge_when_the_budget_is_spent() {
    let (svc, log) = scripted(&[Answer::Ok(100 * MS)]);
    let layer = fixed().budget(tokens(0)).build().unwrap();
    let (result, took) = timed(layer.layer(svc), 0).await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(took, 100 * MS);
    assert_eq!(log.calls(), 1);
    let budget = layer.budget().snapshot();
    assert_eq!((budget.first_tries, budget.retries), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn hedges_spend_what_retries_could_use_from_a_shared_budget() {
    let retry = RetryConfig::new()
        .max_attempts(3)
        .backoff(Backoff::Constant { delay: 10 * MS })
        .budget(tokens(1))
        .build()
        .unwrap();
    let budget: RetryBudget = retry.budget().unwrap();
    let hedge = fixed().build().unwrap().with_budget(budget.clone());

    // Before the hedge, the retry could be paid for ...
    assert_eq!(budget.snapshot().available, 1);
    let (svc, _) = scripted(&[Answer::Hang, Answer::Ok(MS)]);
    assert_eq!(hedge.layer(svc).oneshot(0).await.unwrap(), 2);
    // ... the hedge took the only token ...
    assert_eq!(budget.snapshot().available, 0);
    let (svc, log) = scripted(&[Answer::Fail(MS), Answer::Ok(MS)]);
    let err = retry.layer(svc).oneshot(0).await.unwrap_err();
    // ... so the retry is refused.
    assert_eq!(err.to_string(), "call 1 failed");
    assert_eq!(log.calls(), 1);
    let snap = budget.snapshot();
    assert_eq!((snap.first_tries, snap.retries), (2, 1));

    // And the other way round: a retry spends what a hedge could use.
    sleep(Duration::from_secs(2)).await;
    let (svc, _) = scripted(&[Answer::Fail(MS), Answer::Ok(MS)]);
    assert_eq!(retry.layer(svc).oneshot(0).await.unwrap(), 2);
    let (svc, log) = scripted(&[Answer::Ok(100 * MS)]);
    hedge.layer(svc).oneshot(0).await.unwrap();
    assert_eq!(log.calls(), 1, "no hedge left in the budget");
}

// === the tracked percentile ===

#[tokio::test(start_paused = true)]
async fn the_delay_follows_the_tracked_percentile() {
    let layer = HedgeConfig::new()
        .delay(HedgeDelay::Percentile {
            percentile: 0.9,
            min_samples: 10,
            window: Duration::from_secs(1),
        })
        .budget(BudgetConfig::new().ratio(10.0))
        .build()
        .unwrap();
    let built = Instant::now();
    // Calls of 1 ms, 2 ms, ..., 20 ms: the 90th percentile is 18 ms.
    let script: Vec<Answer> = (1..=20).map(|n| Answer::Ok(n * MS)).collect();
    let (svc, log) = scripted(&script);
    let svc = layer.layer(svc);
    for _ in 0..20 {
        svc.clone().oneshot(0).await.unwrap();
    }
    assert_eq!(log.calls(), 20, "no hedges before the window completes");
    assert_eq!(layer.current_delay(), None);

    sleep_until_window(built, 1).await;
    let delay = layer.current_delay().expect("a complete window");
    let truth = 18 * MS;
    assert!(
        delay >= truth && delay - truth <= truth / 16,
        "{delay:?} is not within one bucket above {truth:?}"
    );

    // A call slower than that is hedged at the delay (on tokio's 1 ms
    // timer ticks).
    let (svc, log) = scripted(&[Answer::Hang, Answer::Ok(MS)]);
    assert_eq!(layer.layer(svc).oneshot(0).await.unwrap(), 2);
    let at = log.times()[1];
    assert!(
        at >= delay && at < delay + MS,
        "hedged at {at:?}, delay {delay:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn hedge_wins_keep_the_estimate_from_falling() {
    // Every call hangs and is won by a hedge 1 ms after it is sent. The
    // time waited, not the hedge's 1 ms, is what the histogram records.
    let layer = HedgeConfig::new()
        .delay(HedgeDelay::Percentile {
            percentile: 0.5,
            min_samples: 5,
            window: Duration::from_secs(1),
        })
        .budget(BudgetConfig::new().ratio(10.0))
        .build()
        .unwrap();
    let built = Instant::now();
    let (svc, _) = scripted(&[Answer::Ok(40 * MS); 5]);
    let svc = layer.layer(svc);
    for _ in 0..5 {
        svc.clone().oneshot(0).await.unwrap();
    }
    sleep_until_window(built, 1).await;
    let first = layer.current_delay().unwrap();
    assert!(first >= 40 * MS && first <= 43 * MS, "{first:?}");

    let script: Vec<Answer> = (0..5)
        .flat_map(|_| [Answer::Hang, Answer::Ok(MS)])
        .collect();
    let (svc, _) = scripted(&script);
    let svc = layer.layer(svc);
    for _ in 0..5 {
        assert_eq!(svc.clone().oneshot(0).await.unwrap() % 2, 0, "hedge won");
    }
    sleep_until_window(built, 2).await;
    let next = layer.current_delay().unwrap();
    assert!(next >= first, "{next:?} fell below {first:?}");
}

/// Sleeps until window `n` of a layer built at `built` has begun.
async fn sleep_until_window(built: Instant, n: u32) {
    tokio::time::sleep_until(built + Duration::from_secs(n.into())).await;
}

// === metrics ===

#[test]
fn reports_hedges_sent_won_and_budget_exhausted() {
    let recorder = TestRecorder::default();
    metrics::with_local_recorder(&recorder, || {
        common::paused_runtime().block_on(async {
            let layer = fixed().name("search").budget(tokens(2)).build().unwrap();
            let (svc, _) = scripted(&[
                // hedged, the hedge wins
                Answer::Hang,
                Answer::Ok(MS),
                // hedged, the first attempt wins
                Answer::Ok(70 * MS),
                Answer::Ok(100 * MS),
                // due for a hedge, but the budget is spent
                Answer::Ok(100 * MS),
                // answered before the delay
                Answer::Ok(MS),
            ]);
            let svc = layer.layer(svc);
            for _ in 0..4 {
                let call = svc.clone().oneshot(0);
                timeout(Duration::from_secs(1), call)
                    .await
                    .unwrap()
                    .unwrap();
            }
        });
    });
    let c = |name| recorder.get(name, &[("name", "search")]).counter();
    assert_eq!(c("rampart_hedge_sent_total"), 2);
    assert_eq!(c("rampart_hedge_won_total"), 1);
    assert_eq!(c("rampart_hedge_budget_exhausted_total"), 1);
}

// === composition ===

#[tokio::test(start_paused = true)]
async fn stacks_under_a_retry_layer() {
    // Retry outside, hedging inside, one budget.
    let retry = RetryConfig::new()
        .backoff(Backoff::Constant { delay: 10 * MS })
        .build()
        .unwrap();
    let hedge = fixed()
        .build()
        .unwrap()
        .with_budget(retry.budget().unwrap());
    let (svc, log) = scripted(&[Answer::Fail(MS), Answer::Hang, Answer::Ok(5 * MS)]);
    let svc = ServiceBuilder::new().layer(retry).layer(hedge).service(svc);
    let (result, took) = timed(svc, 0).await;
    // try 1 fails at 1 ms; the retry at 11 ms hangs and is hedged at 61.
    assert_eq!(result.unwrap(), 3);
    assert_eq!(took, 66 * MS);
    assert_eq!(log.times(), [Duration::ZERO, 11 * MS, 61 * MS]);
}

// === config ===

fn field(cfg: HedgeConfig) -> &'static str {
    cfg.build().expect_err("expected a refusal").field()
}

#[test]
fn refusals_name_the_field() {
    assert!(HedgeConfig::new().build().is_ok(), "the defaults build");
    assert_eq!(
        field(HedgeConfig::new().delay(HedgeDelay::Fixed(Duration::ZERO))),
        "delay"
    );
    for p in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
        assert_eq!(
            field(HedgeConfig::new().delay(HedgeDelay::percentile(p))),
            "delay.percentile",
            "{p}"
        );
    }
    let tracked = |min_samples, window| HedgeDelay::Percentile {
        percentile: 0.9,
        min_samples,
        window,
    };
    assert_eq!(
        field(HedgeConfig::new().delay(tracked(0, Duration::from_secs(1)))),
        "delay.min_samples"
    );
    assert_eq!(
        field(HedgeConfig::new().delay(tracked(1, Duration::ZERO))),
        "delay.window"
    );
    assert_eq!(field(HedgeConfig::new().max_hedges(0)), "max_hedges");
    assert_eq!(field(HedgeConfig::new().max_hedges(4)), "max_hedges");
    assert!(HedgeConfig::new().max_hedges(3).build().is_ok());
    assert_eq!(
        field(HedgeConfig::new().budget(BudgetConfig::new().ratio(11.0))),
        "budget.ratio"
    );
}

#[test]
fn loads_from_toml() {
    let cfg: HedgeConfig = toml::from_str(
        r#"
        name = "search"
        delay = { percentile = 0.99, min_samples = 500, window = "30s" }
        max_hedges = 2
        budget = { ratio = 0.05, min_per_second = 1, window = "20s", buckets = 20 }
        "#,
    )
    .unwrap();
    let expected = HedgeConfig::new()
        .name("search")
        .delay(HedgeDelay::Percentile {
            percentile: 0.99,
            min_samples: 500,
            window: Duration::from_secs(30),
        })
        .max_hedges(2)
        .budget(
            BudgetConfig::new()
                .ratio(0.05)
                .min_per_second(1)
                .window(Duration::from_secs(20), 20),
        );
    assert_eq!(cfg, expected);
    cfg.build().unwrap();

    let empty: HedgeConfig = toml::from_str("").unwrap();
    assert_eq!(empty, HedgeConfig::new());
    let defaults: HedgeConfig = toml::from_str("delay = { percentile = 0.95 }").unwrap();
    assert_eq!(defaults, HedgeConfig::new().delay(HedgeDelay::default()));
    let fixed: HedgeConfig = toml::from_str("delay = \"25ms\"").unwrap();
    assert_eq!(fixed, HedgeConfig::new().delay(HedgeDelay::Fixed(25 * MS)));
    let millis: HedgeConfig = toml::from_str("delay = 25").unwrap();
    assert_eq!(millis, fixed);
}

#[test]
fn toml_refuses_unknown_keys_and_bad_values() {
    let err = toml::from_str::<HedgeConfig>("max_hedge = 1").unwrap_err();
    assert!(err.to_string().contains("max_hedge"), "{err}");
    let err =
        toml::from_str::<HedgeConfig>("delay = { percentile = 0.9, quantile = 0.9 }").unwrap_err();
    assert!(err.to_string().contains("quantile"), "{err}");
    assert!(toml::from_str::<HedgeConfig>("delay = { min_samples = 10 }").is_err());
    assert!(toml::from_str::<HedgeConfig>("delay = \"10 parsecs\"").is_err());
    assert!(toml::from_str::<HedgeConfig>("delay = -5").is_err());
    assert!(toml::from_str::<HedgeConfig>("delay = true").is_err());
    // Parses, but build refuses it and names the field.
    let cfg: HedgeConfig = toml::from_str("delay = { percentile = 1.0 }").unwrap();
    assert_eq!(cfg.build().unwrap_err().field(), "delay.percentile");
}

#[test]
fn the_layer_is_cloneable_and_debuggable() {
    let layer: HedgeLayer = fixed().name("x").build().unwrap();
    let copy = layer.clone();
    drop(layer);
    let text = format!("{copy:?}");
    assert!(
        text.contains("HedgeLayer") && text.contains("50ms"),
        "{text}"
    );
}

//! The balancer service: following discovery, readiness, errors, load.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use rampart_balance::strategy::{Endpoint, Pick, Strategy};
use rampart_balance::{Balance, BalanceConfig, NoEndpoints, NoReadyEndpoint, Weighted};
use rampart_core::BoxError;
use rampart_core::classify::{Decision, RetryHint, classify_fn};
use tokio::sync::mpsc;
use tower::discover::Change;
use tower::{Service, ServiceExt, service_fn};
use tower_test::mock;

/// A discovery stream the test feeds.
struct Changes<S, E = Infallible>(mpsc::UnboundedReceiver<Result<Change<String, S>, E>>);

impl<S, E> Stream for Changes<S, E> {
    type Item = Result<Change<String, S>, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

type Feed<S, E = Infallible> = mpsc::UnboundedSender<Result<Change<String, S>, E>>;

fn changes<S, E>() -> (Feed<S, E>, Changes<S, E>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, Changes(rx))
}

fn insert<S>(feed: &Feed<S>, key: &str, service: S) {
    feed.send(Ok(Change::Insert(key.to_owned(), service)))
        .unwrap();
}

/// What the strategy saw at each pick.
#[derive(Debug, Default)]
struct Seen {
    routable: Vec<Vec<String>>,
    costs: Vec<Vec<(String, f64)>>,
    pending: Vec<Vec<(String, u32)>>,
    weights: Vec<(String, u32)>,
}

/// Picks the routable endpoint with the lowest id, recording what it saw.
#[derive(Debug, Clone, Default)]
struct Lowest(Arc<Mutex<Seen>>);

impl Strategy for Lowest {
    fn update(&mut self, endpoints: &[Option<Endpoint>]) {
        let mut seen = self.0.lock().unwrap();
        seen.weights = endpoints
            .iter()
            .flatten()
            .map(|e| (e.id.to_string(), e.weight))
            .collect();
        seen.weights.sort();
    }

    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize> {
        let id = |slot: usize| pick.endpoints[slot].as_ref().unwrap().id.to_string();
        let mut seen = self.0.lock().unwrap();
        let mut ids: Vec<String> = pick.routable.iter().map(|&s| id(s)).collect();
        ids.sort();
        seen.routable.push(ids);
        seen.costs.push(
            pick.routable
                .iter()
                .map(|&s| (id(s), pick.cost(s)))
                .collect(),
        );
        seen.pending.push(
            pick.routable
                .iter()
                .map(|&s| (id(s), pick.pending(s)))
                .collect(),
        );
        pick.routable.iter().copied().min_by_key(|&s| id(s))
    }
}

fn echo(
    name: &'static str,
) -> impl Service<
    (),
    Response = &'static str,
    Error = Infallible,
    Future = std::future::Ready<Result<&'static str, Infallible>>,
> + Clone
+ Send
+ 'static {
    service_fn(move |()| std::future::ready(Ok::<_, Infallible>(name)))
}

#[tokio::test]
async fn follows_discovery_changes() {
    let (feed, discover) = changes();
    let strategy = Lowest::default();
    let mut balance = Balance::new(discover, strategy.clone());
    insert(&feed, "b", echo("b"));
    assert_eq!(balance.ready().await.unwrap().call(()).await.unwrap(), "b");
    insert(&feed, "a", echo("a"));
    assert_eq!(balance.ready().await.unwrap().call(()).await.unwrap(), "a");
    feed.send(Ok(Change::Remove("a".into()))).unwrap();
    assert_eq!(balance.ready().await.unwrap().call(()).await.unwrap(), "b");
    assert_eq!(balance.len(), 1);
    let seen = strategy.0.lock().unwrap();
    assert_eq!(seen.routable, [vec!["b"], vec!["a", "b"], vec!["b"]]);
}

#[tokio::test]
async fn a_removed_endpoint_finishes_its_requests_in_flight() {
    let (feed, discover) = changes();
    let (svc, mut handle) = mock::pair::<(), &'static str>();
    let mut balance = Balance::new(discover, Lowest::default());
    insert(&feed, "a", svc);
    handle.allow(1);
    let call = balance.ready().await.unwrap().call(());
    let (_, reply) = handle.next_request().await.unwrap();
    feed.send(Ok(Change::Remove("a".into()))).unwrap();
    // the removal is applied on the next poll: no endpoint is left
    let err = balance.ready().await.unwrap_err();
    assert!(err.downcast_ref::<NoEndpoints>().is_some(), "{err}");
    reply.send_response("done");
    assert_eq!(call.await.unwrap(), "done");
}

#[tokio::test]
async fn fails_fast_without_endpoints_or_with_none_ready() {
    let (feed, discover) = changes::<mock::Mock<(), &'static str>, Infallible>();
    let mut balance = Balance::new(discover, Lowest::default());
    let err = balance.ready().await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<NoEndpoints>().map(NoEndpoints::waited),
        Some(Duration::ZERO)
    );
    let (svc, mut handle) = mock::pair::<(), &'static str>();
    handle.allow(0);
    insert(&feed, "a", svc);
    let err = balance.ready().await.unwrap_err();
    let none_ready = err
        .downcast_ref::<NoReadyEndpoint>()
        .expect("NoReadyEndpoint");
    assert_eq!(none_ready.endpoints(), 1);
    drop(handle);
}

#[tokio::test(start_paused = true)]
async fn waits_up_to_max_wait_then_fails() {
    let (feed, discover) = changes();
    let config = BalanceConfig::new().max_wait(Duration::from_secs(2));
    let mut balance = Balance::with_config(discover, Lowest::default(), config).unwrap();
    // an endpoint arriving within the wait is used
    let feeder = feed.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        insert(&feeder, "a", echo("a"));
    });
    let started = tokio::time::Instant::now();
    assert_eq!(balance.ready().await.unwrap().call(()).await.unwrap(), "a");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    // none arriving: the wait ends with the error
    feed.send(Ok(Change::Remove("a".into()))).unwrap();
    let started = tokio::time::Instant::now();
    let err = balance.ready().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(
        err.downcast_ref::<NoEndpoints>().map(NoEndpoints::waited),
        Some(Duration::from_secs(2))
    );
}

/// An endpoint that is not ready becomes ready without any request
/// arriving: a task drives it.
#[tokio::test]
async fn pending_endpoints_are_driven_without_requests() {
    let (feed, discover) = changes();
    let (svc, mut handle) = mock::pair::<(), &'static str>();
    let mut balance = Balance::new(discover, Lowest::default());
    handle.allow(0);
    insert(&feed, "a", svc);
    assert!(balance.ready().await.is_err()); // not ready: handed to a driver
    handle.allow(1); // wakes the driver task, not the balancer
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    // the balancer finds it ready on its next poll, without waiting
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    assert!(matches!(balance.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let call = balance.call(());
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_response("a");
    assert_eq!(call.await.unwrap(), "a");
}

#[tokio::test]
async fn a_replaced_endpoint_keeps_its_load_and_zero_weight_is_one() {
    let (feed, discover) = changes();
    let strategy = Lowest::default();
    let mut balance = Balance::new(discover, strategy.clone()).weight_by(Weighted::weight);
    insert(&feed, "a", Weighted::new(echo("a1"), 0));
    assert_eq!(balance.ready().await.unwrap().call(()).await.unwrap(), "a1");
    assert_eq!(strategy.0.lock().unwrap().weights, [("a".to_owned(), 1)]);
    insert(&feed, "a", Weighted::new(echo("a2"), 7));
    assert_eq!(balance.ready().await.unwrap().call(()).await.unwrap(), "a2");
    assert_eq!(balance.len(), 1);
    assert_eq!(strategy.0.lock().unwrap().weights, [("a".to_owned(), 7)]);
}

#[tokio::test]
async fn pending_counts_requests_in_flight_and_drops_release_them() {
    let (feed, discover) = changes();
    let (svc, mut handle) = mock::pair::<(), &'static str>();
    let strategy = Lowest::default();
    let mut balance = Balance::new(discover, strategy.clone());
    insert(&feed, "a", svc);
    handle.allow(3);
    let first = balance.ready().await.unwrap().call(());
    let second = balance.ready().await.unwrap().call(());
    balance.ready().await.unwrap();
    drop(first); // cancelled: no longer pending
    drop(balance.call(()));
    let seen = strategy.0.lock().unwrap();
    let pending: Vec<u32> = seen.pending.iter().map(|p| p[0].1).collect();
    assert_eq!(pending, [0, 1, 1]);
    drop(second);
}

/// A fast failure counts as the failure penalty, so a failing endpoint
/// does not look fast.
#[tokio::test(start_paused = true)]
async fn a_fast_failure_costs_the_penalty() {
    let (feed, discover) = changes();
    let strategy = Lowest::default();
    let config = BalanceConfig::new()
        .default_rtt(Duration::from_millis(1))
        .failure_penalty(Duration::from_secs(1));
    let mut balance = Balance::with_config(discover, strategy.clone(), config).unwrap();
    let failing = service_fn(|()| std::future::ready(Err::<&str, BoxError>("503".into())));
    insert(&feed, "a", failing);
    assert!(balance.ready().await.unwrap().call(()).await.is_err());
    balance.ready().await.unwrap();
    drop(balance.call(()));
    let seen = strategy.0.lock().unwrap();
    let before = seen.costs[0][0].1;
    let after = seen.costs[1][0].1;
    assert!((before - 1e6).abs() < 1.0, "{before}");
    // the failure took no time, but counts as 1 s (times pending + 1 = 1)
    assert!((after - 1e9).abs() < 1e3, "{after}");
}

/// An answer with `Retry-After` takes its endpoint out of rotation for
/// that long (capped), then it is back.
#[tokio::test(start_paused = true)]
async fn retry_after_takes_an_endpoint_out_of_rotation() {
    let (feed, discover) = changes();
    let strategy = Lowest::default();
    let classify = classify_fn(|r: &Result<&'static str, Infallible>| match r {
        Ok("busy") => Decision::failure().with_retry(RetryHint::After(Duration::from_secs(5))),
        _ => Decision::success(),
    });
    let mut balance = Balance::new(discover, strategy.clone()).classify(classify);
    insert(&feed, "a", echo("busy"));
    insert(&feed, "b", echo("b"));
    assert_eq!(
        balance.ready().await.unwrap().call(()).await.unwrap(),
        "busy"
    );
    assert_eq!(balance.ready().await.unwrap().call(()).await.unwrap(), "b");
    tokio::time::advance(Duration::from_millis(4_999)).await;
    assert_eq!(balance.ready().await.unwrap().call(()).await.unwrap(), "b");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(
        balance.ready().await.unwrap().call(()).await.unwrap(),
        "busy"
    );
    let seen = strategy.0.lock().unwrap();
    let routable: Vec<usize> = seen.routable.iter().map(Vec::len).collect();
    assert_eq!(routable, [2, 1, 1, 2]);
}

/// With every endpoint backing off and a wait allowed, the balancer waits
/// for the first back-off to end instead of failing.
#[tokio::test(start_paused = true)]
async fn waits_for_a_back_off_to_end() {
    let (feed, discover) = changes();
    let classify = classify_fn(|_: &Result<&'static str, Infallible>| {
        Decision::failure().with_retry(RetryHint::After(Duration::from_secs(3)))
    });
    let config = BalanceConfig::new().max_wait(Duration::from_secs(10));
    let mut balance = Balance::with_config(discover, Lowest::default(), config)
        .unwrap()
        .classify(classify);
    insert(&feed, "a", echo("a"));
    balance.ready().await.unwrap().call(()).await.unwrap();
    let started = tokio::time::Instant::now();
    balance.ready().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test]
async fn a_discovery_error_is_typed() {
    let (feed, discover) = changes::<mock::Mock<(), ()>, std::io::Error>();
    let mut balance = Balance::new(discover, Lowest::default());
    feed.send(Err(std::io::Error::other("registry down")))
        .unwrap();
    let err = balance.ready().await.unwrap_err();
    let discover = err
        .downcast_ref::<rampart_balance::DiscoverError>()
        .expect("DiscoverError");
    assert!(discover.to_string().contains("registry down"), "{discover}");
}

#[tokio::test(start_paused = true)]
async fn the_handle_and_metrics_follow_each_endpoint() {
    use rampart_core::testing::TestRecorder;
    let recorder = TestRecorder::default();
    let (feed, discover) = changes::<_, Infallible>();
    let classify = classify_fn(|r: &Result<&'static str, Infallible>| match r {
        Ok("busy") => Decision::failure().with_retry(RetryHint::After(Duration::from_secs(5))),
        _ => Decision::success(),
    });
    let config = BalanceConfig::new()
        .name("orders")
        .default_rtt(Duration::from_millis(20));
    let mut balance = metrics::with_local_recorder(&recorder, || {
        Balance::with_config(discover, Lowest::default(), config)
            .unwrap()
            .classify(classify)
    });
    let handle = balance.handle();
    insert(&feed, "a", echo("busy"));
    insert(&feed, "b", echo("b"));
    // endpoints are added (and their metrics registered) on a poll
    metrics::with_local_recorder(&recorder, || {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        assert!(matches!(balance.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    });
    let a = [("name", "orders"), ("key", "a")];
    let b = [("name", "orders"), ("key", "b")];
    assert_eq!(
        recorder
            .get("rampart_balance_endpoints", &[("name", "orders")])
            .gauge(),
        2.0
    );
    let call = balance.call(());
    assert_eq!(recorder.get("rampart_balance_pending", &a).gauge(), 1.0);
    assert_eq!(handle.endpoints()[0].pending, 1);
    assert_eq!(call.await.unwrap(), "busy");
    assert_eq!(recorder.get("rampart_balance_pending", &a).gauge(), 0.0);
    let failures = [("name", "orders"), ("key", "a"), ("outcome", "failure")];
    assert_eq!(
        recorder
            .get("rampart_balance_requests_total", &failures)
            .counter(),
        1
    );
    assert_eq!(balance.ready().await.unwrap().call(()).await.unwrap(), "b");
    let successes = [("name", "orders"), ("key", "b"), ("outcome", "success")];
    assert_eq!(
        recorder
            .get("rampart_balance_requests_total", &successes)
            .counter(),
        1
    );
    let status = handle.endpoints();
    assert_eq!(
        status.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(status[0].backing_off_for, Some(Duration::from_secs(5)));
    assert_eq!(status[1].backing_off_for, None);
    assert_eq!(status[1].latency, Duration::from_millis(20));
    assert_eq!(recorder.get("rampart_balance_pending", &b).gauge(), 0.0);
}

//! Endpoint health inside the balancer: outlier ejection and recovery,
//! the panic threshold and slow start, on tokio's paused clock.

use std::convert::Infallible;
use std::time::Duration;

use rampart_balance::health::{OutlierConfig, PanicThreshold, SlowStartConfig};
use rampart_balance::strategy::{RoundRobin, SmoothWeightedRoundRobin};
use rampart_balance::{Balance, BalanceConfig, Weighted};
use rampart_core::BoxError;
use tower::discover::ServiceList;
use tower::{Service, ServiceExt, service_fn};

/// An endpoint answering its name, or failing when `fails`.
fn endpoint(
    name: &'static str,
    fails: bool,
) -> impl Service<
    (),
    Response = &'static str,
    Error = BoxError,
    Future = std::future::Ready<Result<&'static str, BoxError>>,
> + Send
+ 'static {
    service_fn(move |()| {
        std::future::ready(if fails {
            Err::<&'static str, BoxError>(format!("{name} failed").into())
        } else {
            Ok(name)
        })
    })
}

/// Sends `n` requests; the answers (a failure as `"!"`).
async fn send<S>(balance: &mut S, n: usize) -> Vec<&'static str>
where
    S: Service<(), Response = &'static str, Error = BoxError>,
{
    let mut answers = Vec::new();
    for _ in 0..n {
        let call = balance.ready().await.unwrap().call(());
        answers.push(call.await.unwrap_or("!"));
    }
    answers
}

fn outlier() -> OutlierConfig {
    OutlierConfig::default()
        .consecutive_failures(3)
        .interval(Duration::from_secs(10))
        .base_ejection_time(Duration::from_secs(30))
        .max_ejection_time_jitter(Duration::ZERO)
}

#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_is_ejected_then_readmitted() {
    let endpoints = vec![
        endpoint("a", true),
        endpoint("b", false),
        endpoint("c", false),
    ];
    let config = BalanceConfig::new().seed(1).outlier(outlier());
    let mut balance =
        Balance::with_config(ServiceList::new(endpoints), RoundRobin::new(), config).unwrap();
    let handle = balance.handle();
    // round robin reaches `a` every third call: three failures eject it
    let answers = send(&mut balance, 9).await;
    assert_eq!(answers.iter().filter(|a| **a == "!").count(), 3);
    // answers are applied on the next poll
    balance.ready().await.unwrap();
    let status = handle.endpoints();
    assert_eq!(status[0].id, "0");
    assert_eq!(status[0].ejected_for, Some(Duration::from_secs(30)));
    assert_eq!(status[0].ejections, 1);
    // while ejected, no request reaches it
    assert!(!send(&mut balance, 20).await.contains(&"!"));
    // at the first evaluation after the ejection time it is back
    tokio::time::advance(Duration::from_secs(30)).await;
    let answers = send(&mut balance, 6).await;
    assert!(answers.contains(&"!"), "{answers:?}");
    assert_eq!(handle.endpoints()[0].ejected_for, None);
}

#[tokio::test(start_paused = true)]
async fn below_the_panic_threshold_every_endpoint_takes_traffic() {
    let endpoints = vec![
        endpoint("a", true),
        endpoint("b", true),
        endpoint("c", false),
    ];
    let outlier = outlier().max_ejection_percent(100);
    let config = BalanceConfig::new()
        .seed(1)
        .outlier(outlier.clone())
        .panic_threshold(PanicThreshold::new(50.0).unwrap());
    let mut balance =
        Balance::with_config(ServiceList::new(endpoints), RoundRobin::new(), config).unwrap();
    let handle = balance.handle();
    send(&mut balance, 30).await;
    balance.ready().await.unwrap();
    // `a` and `b` are ejected: 1 of 3 healthy is below 50 %, so all three
    // take traffic again
    let ejected = handle
        .endpoints()
        .iter()
        .filter(|e| e.ejected_for.is_some())
        .count();
    assert_eq!(ejected, 2);
    let answers = send(&mut balance, 30).await;
    assert_eq!(answers.iter().filter(|a| **a == "c").count(), 10);

    // without a panic threshold only `c` is left
    let endpoints = vec![
        endpoint("a", true),
        endpoint("b", true),
        endpoint("c", false),
    ];
    let config = BalanceConfig::new()
        .seed(1)
        .outlier(outlier)
        .panic_threshold(PanicThreshold::DISABLED);
    let mut balance =
        Balance::with_config(ServiceList::new(endpoints), RoundRobin::new(), config).unwrap();
    send(&mut balance, 30).await;
    assert!(send(&mut balance, 30).await.iter().all(|a| *a == "c"));
}

#[tokio::test(start_paused = true)]
async fn a_new_endpoint_ramps_up_over_the_slow_start_window() {
    let (feed, rx) = tokio::sync::mpsc::unbounded_channel();
    let discover = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|change| (Ok::<_, Infallible>(change), rx))
    });
    let slow_start = SlowStartConfig::new()
        .window(Duration::from_secs(10))
        .aggression(1.0)
        .min_weight_percent(10.0);
    let config = BalanceConfig::new().seed(1).slow_start(slow_start);
    let mut balance =
        Balance::with_config(Box::pin(discover), SmoothWeightedRoundRobin::new(), config)
            .unwrap()
            .weight_by(Weighted::weight);
    let handle = balance.handle();
    use tower::discover::Change;
    feed.send(Change::Insert("a", Weighted::new(endpoint("a", false), 10)))
        .unwrap();
    send(&mut balance, 1).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    // `a` has finished its ramp; `b` starts at the floor (10 % of 10)
    feed.send(Change::Insert("b", Weighted::new(endpoint("b", false), 10)))
        .unwrap();
    let answers = send(&mut balance, 11).await;
    assert_eq!(
        answers.iter().filter(|a| **a == "b").count(),
        1,
        "{answers:?}"
    );
    let weights = |h: &rampart_balance::BalanceHandle| -> Vec<f64> {
        h.endpoints().iter().map(|e| e.effective_weight).collect()
    };
    assert_eq!(weights(&handle), [10.0, 1.0]);
    tokio::time::advance(Duration::from_secs(5)).await;
    send(&mut balance, 1).await;
    assert_eq!(weights(&handle), [10.0, 5.0]);
    tokio::time::advance(Duration::from_secs(5)).await;
    send(&mut balance, 1).await;
    assert_eq!(weights(&handle), [10.0, 10.0]);
    // after the ramp, an even split
    let answers = send(&mut balance, 20).await;
    assert_eq!(answers.iter().filter(|a| **a == "b").count(), 10);
}

/// Health is per endpoint and survives changes to the set: an ejected
/// endpoint stays ejected when another joins, and the newcomer starts
/// healthy.
#[tokio::test(start_paused = true)]
async fn an_ejection_survives_changes_to_the_endpoint_set() {
    use tower::discover::Change;
    let (feed, rx) = tokio::sync::mpsc::unbounded_channel();
    let discover = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|change| (Ok::<_, Infallible>(change), rx))
    });
    let config = BalanceConfig::new().seed(1).outlier(outlier());
    let mut balance = Balance::with_config(Box::pin(discover), RoundRobin::new(), config).unwrap();
    let handle = balance.handle();
    for (key, fails) in [("a", true), ("b", false), ("c", false)] {
        feed.send(Change::Insert(key, endpoint(key, fails)))
            .unwrap();
    }
    send(&mut balance, 9).await;
    balance.ready().await.unwrap();
    let ejected = |h: &rampart_balance::BalanceHandle| -> Vec<String> {
        h.endpoints()
            .into_iter()
            .filter(|e| e.ejected_for.is_some())
            .map(|e| e.id)
            .collect()
    };
    assert_eq!(ejected(&handle), ["a"]);
    // a newcomer joins, and another endpoint leaves: `a` stays ejected
    feed.send(Change::Insert("d", endpoint("d", false)))
        .unwrap();
    feed.send(Change::Remove("c")).unwrap();
    let answers = send(&mut balance, 10).await;
    assert_eq!(ejected(&handle), ["a"]);
    assert!(!answers.contains(&"!"), "{answers:?}");
    assert!(
        answers.contains(&"d") && answers.contains(&"b"),
        "{answers:?}"
    );
    assert_eq!(handle.endpoints().len(), 3);
}

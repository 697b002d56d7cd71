//! A simulation like tower's own balance demo: endpoints with different
//! latency distributions under a steady stream of requests, on tokio's
//! paused clock. Power of two choices on peak EWMA must avoid the slow
//! endpoints that round robin keeps sending to.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_balance::strategy::{Load, PowerOfTwoChoices, RoundRobin, Strategy};
use rampart_balance::{Balance, BalanceConfig};
use rampart_core::random::SharedRng;
use tokio::time::Instant;
use tower::discover::ServiceList;
use tower::{Service, ServiceExt, service_fn};

/// Requests sent, one per millisecond.
const REQUESTS: usize = 4_000;

/// An endpoint whose latency is `base` plus up to `spread`, drawn from a
/// seeded generator.
fn endpoint(
    base: Duration,
    spread: Duration,
    seed: u64,
) -> impl Service<(), Response = (), Error = Infallible, Future: Send> + Send + 'static {
    let rng = Arc::new(SharedRng::new(seed));
    service_fn(move |()| {
        let latency = base + spread.mul_f64(rng.unit());
        async move {
            tokio::time::sleep(latency).await;
            Ok::<_, Infallible>(())
        }
    })
}

/// Latencies of every request through a balancer with `strategy`, over 9
/// fast endpoints (10–20 ms) and a slow one (300–500 ms).
async fn latencies(strategy: impl Strategy + 'static) -> Vec<Duration> {
    let mut endpoints = Vec::new();
    for i in 0..10 {
        let (base, spread) = if i < 9 {
            (Duration::from_millis(10), Duration::from_millis(10))
        } else {
            (Duration::from_millis(300), Duration::from_millis(200))
        };
        endpoints.push(endpoint(base, spread, i));
    }
    let config = BalanceConfig::new().seed(42);
    let mut balance = Balance::with_config(ServiceList::new(endpoints), strategy, config).unwrap();
    let seen = Arc::new(Mutex::new(Vec::with_capacity(REQUESTS)));
    let mut calls = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let call = balance.ready().await.unwrap().call(());
        let seen = seen.clone();
        calls.push(tokio::spawn(async move {
            let start = Instant::now();
            call.await.unwrap();
            seen.lock().unwrap().push(start.elapsed());
        }));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for call in calls {
        call.await.unwrap();
    }
    let mut seen = std::mem::take(&mut *seen.lock().unwrap());
    seen.sort();
    seen
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test(start_paused = true)]
async fn p2c_on_peak_ewma_beats_round_robin_at_the_tail() {
    let rr = latencies(RoundRobin::new()).await;
    let p2c = latencies(PowerOfTwoChoices::new(Load::PeakEwma)).await;
    let (rr_p95, rr_p99) = (percentile(&rr, 0.95), percentile(&rr, 0.99));
    let p2c_p99 = percentile(&p2c, 0.99);
    // Round robin sends a tenth of the requests to the slow endpoint, so
    // its p95 and p99 are slow; p2c learns to avoid it after its first
    // answers (a handful of requests, well under 1 %).
    assert!(
        rr_p95 >= Duration::from_millis(300),
        "round robin p95 {rr_p95:?}"
    );
    assert!(p2c_p99 < Duration::from_millis(50), "p2c p99 {p2c_p99:?}");
    assert!(
        p2c_p99 * 5 < rr_p99,
        "p2c p99 {p2c_p99:?} is not well below round robin's {rr_p99:?}"
    );
}

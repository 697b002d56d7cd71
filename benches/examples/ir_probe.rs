//! Makes N calls through one layer, for counting instructions per call
//! under callgrind (`benches/ir.sh`), a figure that does not move with the
//! machine's load the way nanoseconds do.
//!
//! `cargo run --release -p rampart-benches --example ir_probe -- LAYER N`
//! with LAYER one of `bare`, `breaker_count`, `breaker_time`, `bulkhead`,
//! `tower_concurrency_limit`, `retry`, `retry_no_budget`, `tower_retry`, `rate_limit`.
#![allow(
    clippy::print_stderr,
    reason = "a command-line probe reports usage errors"
)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::time::Duration;

use tower::{Layer, Service, ServiceExt, service_fn};

#[path = "../peers/tower_retry.rs"]
mod tower_retry_peer;

/// The no-op inner service of every layer, as in the criterion bench.
fn noop_call(_req: ()) -> Ready<Result<(), Infallible>> {
    ready(Ok(()))
}

/// `n` sequential `ready().call()` round trips on `svc`.
async fn run<S: Service<()>>(mut svc: S, n: u64)
where
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        let r = svc.ready().await.expect("ready").call(()).await;
        std::hint::black_box(r.is_ok());
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(which), Some(n)) = (args.next(), args.next().and_then(|n| n.parse().ok())) else {
        eprintln!("usage: ir_probe LAYER N");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let inner = service_fn(noop_call);
    rt.block_on(async move {
        match which.as_str() {
            "bare" => run(inner, n).await,
            "breaker_count" => {
                let layer = rampart_breaker::BreakerConfig::new()
                    .count_window(100)
                    .build()
                    .expect("valid");
                run(layer.layer(inner), n).await;
            }
            "breaker_time" => {
                let layer = rampart_breaker::BreakerConfig::new()
                    .time_window(Duration::from_secs(10), 10)
                    .slow_calls(Duration::from_secs(1), 0.5)
                    .build()
                    .expect("valid");
                run(layer.layer(inner), n).await;
            }
            "bulkhead" => {
                let layer = rampart_bulkhead::BulkheadConfig::new()
                    .max_concurrent(1_000_000)
                    .build()
                    .expect("valid");
                run(layer.layer(inner), n).await;
            }
            "tower_concurrency_limit" => {
                run(
                    tower::limit::ConcurrencyLimitLayer::new(1_000_000).layer(inner),
                    n,
                )
                .await;
            }
            "retry" => {
                let layer = rampart_retry::RetryConfig::new().build().expect("valid");
                run(layer.layer(inner), n).await;
            }
            "retry_no_budget" => {
                let layer = rampart_retry::RetryConfig::new()
                    .no_budget()
                    .build()
                    .expect("valid");
                run(layer.layer(inner), n).await;
            }
            "tower_retry" => {
                run(
                    tower::retry::RetryLayer::new(tower_retry_peer::BudgetedRetry::new())
                        .layer(inner),
                    n,
                )
                .await;
            }
            "rate_limit" => {
                let layer = rampart_backpressure::RateLimitConfig::new()
                    .rate(1_000_000_000, Duration::from_secs(1))
                    .burst(1_000_000_000)
                    .build()
                    .expect("valid");
                run(layer.layer(inner), n).await;
            }
            other => {
                eprintln!("unknown layer {other:?}");
                std::process::exit(2);
            }
        }
    });
}

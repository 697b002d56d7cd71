//! A flaky upstream behind a bulkhead and a circuit breaker.
//!
//! Twelve clients call an upstream that is healthy for a second, then fails
//! slowly for a second and a half, then recovers. The bulkhead keeps at
//! most 8 calls in flight (a short queue, then `BulkheadFull`); the breaker
//! opens when half the recent calls fail, refuses calls at once while open
//! (`BreakerOpen`), probes with two trial calls and closes when they
//! succeed. The program prints every state change and a summary.
//!
//! Run it with `cargo run -p example-flaky-upstream`.
#![allow(clippy::print_stdout, reason = "an example that reports to its user")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rampart::breaker::{BreakerConfig, BreakerOpen};
use rampart::bulkhead::{BulkheadConfig, BulkheadFull};
use rampart::core::BoxError;
use tokio::time::{Instant, sleep};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const CLIENTS: usize = 12;
const RUN_FOR: Duration = Duration::from_millis(4000);
const DOWN_FROM: Duration = Duration::from_millis(1000);
const DOWN_UNTIL: Duration = Duration::from_millis(2500);

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    upstream_failed: AtomicU64,
    breaker_refused: AtomicU64,
    bulkhead_refused: AtomicU64,
    upstream_calls: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let tally = Arc::new(Tally::default());

    // The upstream: 20 ms when healthy; while down, 200 ms and then an error.
    let upstream = {
        let tally = Arc::clone(&tally);
        service_fn(move |_req: u64| {
            let tally = Arc::clone(&tally);
            async move {
                tally.upstream_calls.fetch_add(1, Ordering::Relaxed);
                let t = start.elapsed();
                if t >= DOWN_FROM && t < DOWN_UNTIL {
                    sleep(Duration::from_millis(200)).await;
                    Err::<&'static str, &'static str>("upstream: 503 service unavailable")
                } else {
                    sleep(Duration::from_millis(20)).await;
                    Ok("200 ok")
                }
            }
        })
    };

    let breaker = BreakerConfig::new()
        .name("upstream")
        .count_window(20)
        .minimum_calls(10)
        .failure_rate_threshold(0.5)
        .open_duration(Duration::from_millis(400))
        .half_open_max_calls(2)
        .build()?;
    let bulkhead = BulkheadConfig::new()
        .name("upstream")
        .max_concurrent(8)
        .max_queued(8)
        .max_wait(Duration::from_millis(50))
        .build()?;
    let breaker_handle = breaker.handle();
    let bulkhead_handle = bulkhead.handle();

    let svc = ServiceBuilder::new()
        .layer(bulkhead)
        .layer(breaker)
        .service(upstream);

    // Print every state change of the breaker as it happens.
    let mut states = breaker_handle.subscribe();
    let watcher = tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let state = *states.borrow_and_update();
            println!("{:>6} ms  breaker -> {state}", start.elapsed().as_millis());
        }
    });

    println!(
        "{CLIENTS} clients for {} ms; the upstream is down from {} to {} ms",
        RUN_FOR.as_millis(),
        DOWN_FROM.as_millis(),
        DOWN_UNTIL.as_millis()
    );
    let clients: Vec<_> = (0..CLIENTS as u64)
        .map(|id| {
            let mut svc = svc.clone();
            let tally = Arc::clone(&tally);
            tokio::spawn(async move {
                while start.elapsed() < RUN_FOR {
                    let result = match svc.ready().await {
                        Ok(ready) => ready.call(id).await,
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(_) => tally.ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) if e.is::<BreakerOpen>() => {
                            tally.breaker_refused.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) if e.is::<BulkheadFull>() => {
                            tally.bulkhead_refused.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(_) => tally.upstream_failed.fetch_add(1, Ordering::Relaxed),
                    };
                    sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();
    for c in clients {
        c.await?;
    }
    watcher.abort();

    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let m = breaker_handle.metrics();
    println!();
    println!("answered ok                      {:>6}", get(&tally.ok));
    println!(
        "failed by the upstream           {:>6}",
        get(&tally.upstream_failed)
    );
    println!(
        "refused by the breaker (fast)    {:>6}",
        get(&tally.breaker_refused)
    );
    println!(
        "refused by the bulkhead (full)   {:>6}",
        get(&tally.bulkhead_refused)
    );
    println!(
        "calls that reached the upstream  {:>6}",
        get(&tally.upstream_calls)
    );
    println!(
        "breaker now {} (window: {} calls, {:.0}% failed); bulkhead rejected {}",
        m.state,
        m.calls,
        m.failure_rate * 100.0,
        bulkhead_handle.rejected(),
    );
    println!(
        "While the upstream was down, the breaker answered most callers at once \
         instead of letting them wait 200 ms for an error, and the bulkhead kept \
         at most 8 calls in flight."
    );
    Ok(())
}

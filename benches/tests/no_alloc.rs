//! The happy path allocates nothing per call: rampart's breaker (count and
//! time window), bulkhead and retry (with timeouts), in front of a no-op
//! service, make 10,000
//! calls after a warm-up without a single new heap block.
//!
//! dhat counts every allocation of the process, so everything runs in one
//! test (only one dhat profiler may exist per process), and the harness is
//! first shown to catch a service that allocates once per call.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::time::Duration;

use rampart_breaker::BreakerConfig;
use rampart_bulkhead::BulkheadConfig;
use rampart_retry::RetryConfig;
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt, service_fn};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Calls made before counting, so that lazily built state (thread locals,
/// the runtime's first poll, a window's first bucket) is in place.
const WARM_UP: u64 = 1_000;

/// Calls counted.
const CALLS: u64 = 10_000;

/// Answers at once, allocating nothing.
fn noop_call(_req: ()) -> Ready<Result<(), Infallible>> {
    ready(Ok(()))
}

/// The inner service of every check.
fn noop() -> impl Service<(), Response = (), Error = Infallible> + Clone {
    service_fn(noop_call)
}

/// One call: readiness, call, await, and the answer must be a success.
async fn ready_call<S>(svc: &mut S)
where
    S: Service<()>,
    S::Error: std::fmt::Debug,
{
    let ready = svc.ready().await.expect("service ready");
    ready.call(()).await.expect("call succeeds");
}

/// Heap blocks allocated by [`CALLS`] calls on `svc`, after [`WARM_UP`]
/// calls.
fn blocks_per_run<S>(rt: &Runtime, mut svc: S) -> u64
where
    S: Service<()>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        for _ in 0..WARM_UP {
            ready_call(&mut svc).await;
        }
        let before = dhat::HeapStats::get().total_blocks;
        for _ in 0..CALLS {
            ready_call(&mut svc).await;
        }
        dhat::HeapStats::get().total_blocks - before
    })
}

#[test]
fn happy_path_allocates_nothing_per_call() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");

    // The harness catches a service that boxes its future on every call.
    type Boxed = Pin<Box<dyn Future<Output = Result<(), Infallible>> + Send>>;
    let boxing = service_fn(|_req: ()| -> Boxed { Box::pin(async { Ok(()) }) });
    let control = blocks_per_run(&rt, boxing);
    assert!(
        control >= CALLS,
        "the allocation counter missed a boxed future per call: {control} blocks for {CALLS} calls"
    );

    // The bare service, for reference: nothing.
    assert_eq!(blocks_per_run(&rt, noop()), 0, "bare no-op service");

    let count = BreakerConfig::new()
        .count_window(100)
        .build()
        .expect("valid breaker config");
    assert_eq!(
        blocks_per_run(&rt, count.layer(noop())),
        0,
        "rampart breaker, count window: heap blocks allocated by {CALLS} calls"
    );

    let time = BreakerConfig::new()
        .time_window(Duration::from_secs(10), 10)
        .slow_calls(Duration::from_secs(1), 0.5)
        .build()
        .expect("valid breaker config");
    assert_eq!(
        blocks_per_run(&rt, time.layer(noop())),
        0,
        "rampart breaker, time window with slow calls: heap blocks allocated by {CALLS} calls"
    );

    let bulkhead = BulkheadConfig::new()
        .max_concurrent(1_000)
        .build()
        .expect("valid bulkhead config");
    assert_eq!(
        blocks_per_run(&rt, bulkhead.layer(noop())),
        0,
        "rampart bulkhead: heap blocks allocated by {CALLS} calls"
    );

    // A retry layer with a per-try timeout and a deadline: its one timer
    // lives inline in the response future, reset rather than reallocated.
    let retry = RetryConfig::new()
        .per_try_timeout(Duration::from_secs(1))
        .deadline(Duration::from_secs(5))
        .build()
        .expect("valid retry config");
    assert_eq!(
        blocks_per_run(&rt, retry.layer(noop())),
        0,
        "rampart retry with timeouts: heap blocks allocated by {CALLS} calls"
    );
}

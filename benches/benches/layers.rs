//! Rampart's breaker and bulkhead side by side with their peers.
//!
//! Every function measures one `ready().call()` round trip through a layer
//! in front of a no-op service that answers `Ok(())` at once and never
//! allocates. Layers and services are built once, outside the measured
//! loop; calls run in batches on a current-thread tokio runtime, so the
//! figure is nanoseconds per call with no per-call `block_on`.
//!
//! Groups and function ids are fixed: `bench-report` reads
//! `target/criterion/<group>/<function>/new/estimates.json`.
//!
//! | group | functions |
//! |---|---|
//! | `breaker` | `bare`, `rampart_count`, `rampart_time`, `tower_resilience`, `failsafe` |
//! | `breaker_time_window_aged` | `rampart_time`, `tower_resilience_time` (after up to 1,000,000 calls in the window) |
//! | `bulkhead` | `bare`, `rampart`, `tower_concurrency_limit`, `tower_resilience` |
//! | `contended` | `breaker_rampart`, `breaker_tower_resilience`, `bulkhead_rampart`, `tower_concurrency_limit` (two threads, one clone each) |
//!
//! Run with `cargo bench -p rampart-benches --bench layers`, then
//! `cargo run -p rampart-benches --bin bench-report`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use rampart_breaker::BreakerConfig;
use rampart_bulkhead::BulkheadConfig;
use tokio::runtime::Runtime;
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_resilience::bulkhead::BulkheadLayer as TrBulkheadLayer;
use tower_resilience::circuitbreaker::{CircuitBreakerLayer, SlidingWindowType};

/// Calls made on an instance before the `breaker_time_window_aged` group
/// measures it.
const AGED_CALLS: u64 = 1_000_000;

/// The most wall time the aged warm-up may take, so that the warm-up calls
/// are still inside the 10 s window while the instance is measured. A
/// window that costs O(calls in the window) per call cannot make
/// [`AGED_CALLS`] calls in this budget; the bench says how many it made.
const AGED_BUDGET: Duration = Duration::from_secs(4);

/// Length of the time windows under test.
const WINDOW: Duration = Duration::from_secs(10);

/// A permit limit no benchmark reaches, so no bulkhead ever waits.
const GENEROUS: usize = 1_000_000;

// === the no-op service ===

/// Answers at once, allocating nothing.
fn noop_call(_req: ()) -> Ready<Result<(), Infallible>> {
    ready(Ok(()))
}

/// The inner service of every benchmark.
fn noop()
-> impl Service<(), Response = (), Error = Infallible, Future = Ready<Result<(), Infallible>>>
+ Clone
+ Send
+ 'static {
    service_fn(noop_call)
}

// === measuring ===

/// Reads the wall clock. A benchmark measures real time; the workspace ban
/// on `std::time::Instant` exists so that library code works under tokio's
/// paused clock, which no benchmark uses.
#[allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "benchmarks measure wall time"
)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// A current-thread runtime, as every benchmark uses.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// One call: wait for readiness, call, await, and check the answer (a
/// rejected call would measure the wrong path).
async fn ready_call<S>(svc: &mut S)
where
    S: Service<()>,
    S::Error: std::fmt::Debug,
{
    let ready = svc.ready().await.expect("service ready");
    let outcome = ready.call(()).await;
    if let Err(e) = black_box(outcome) {
        panic!("call failed: {e:?}");
    }
}

/// Makes `iters` calls on `svc` inside one `block_on` and returns the time
/// they took.
fn batch<S>(rt: &Runtime, svc: &mut S, iters: u64) -> Duration
where
    S: Service<()>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = now();
        for _ in 0..iters {
            ready_call(svc).await;
        }
        start.elapsed()
    })
}

/// Benchmarks `svc` under `id` in `group`, one call per iteration.
fn bench_service<S>(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, id: &str, mut svc: S)
where
    S: Service<()>,
    S::Error: std::fmt::Debug,
{
    group.bench_function(id, |b| b.iter_custom(|iters| batch(rt, &mut svc, iters)));
}

/// Makes up to `calls` calls within `budget`; returns how many it made.
fn warm<S>(rt: &Runtime, svc: &mut S, calls: u64, budget: Duration) -> u64
where
    S: Service<()>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = now();
        let mut made = 0;
        while made < calls {
            for _ in 0..1024 {
                ready_call(svc).await;
            }
            made += 1024;
            if start.elapsed() > budget {
                break;
            }
        }
        made
    })
}

/// Two threads, each with its own current-thread runtime and its own clone
/// of `svc`, make `iters` calls between them; returns the wall time from
/// their common start until both are done.
fn contended<S>(svc: &S, iters: u64) -> Duration
where
    S: Service<()> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        // One thread takes the odd call, so that exactly `iters` are made.
        let workers: Vec<_> = [iters.div_ceil(2), iters / 2]
            .into_iter()
            .map(|calls| {
                let mut svc = svc.clone();
                let barrier = &barrier;
                scope.spawn(move || {
                    let rt = runtime();
                    barrier.wait();
                    let start = now();
                    rt.block_on(async {
                        for _ in 0..calls {
                            ready_call(&mut svc).await;
                        }
                    });
                    start
                })
            })
            .collect();
        let starts: Vec<_> = workers
            .into_iter()
            .map(|w| w.join().expect("a bench thread panicked"))
            .collect();
        let first = starts.into_iter().min().expect("two threads");
        first.elapsed()
    })
}

/// Benchmarks `svc` shared by two threads under `id` in `group`.
fn bench_contended<S>(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, svc: S)
where
    S: Service<()> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    group.bench_function(id, |b| b.iter_custom(|iters| contended(&svc, iters)));
}

// === the services under test ===

/// Rampart's breaker with a count window, failure rate only.
fn rampart_count() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    BreakerConfig::new()
        .count_window(100)
        .build()
        .expect("valid breaker config")
        .layer(noop())
}

/// Rampart's breaker with a 10 s time window in 10 buckets and slow-call
/// detection.
fn rampart_time() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    BreakerConfig::new()
        .time_window(WINDOW, 10)
        .slow_calls(Duration::from_secs(1), 0.5)
        .build()
        .expect("valid breaker config")
        .layer(noop())
}

/// tower-resilience's breaker, count-based window of 100 (its default).
fn tower_resilience_count() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .build()
        .expect("valid tower-resilience breaker config")
        .layer(noop())
}

/// tower-resilience's breaker, time-based window of 10 s.
fn tower_resilience_time() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_type(SlidingWindowType::TimeBased)
        .sliding_window_duration(WINDOW)
        .build()
        .expect("valid tower-resilience breaker config")
        .layer(noop())
}

/// Rampart's bulkhead with a limit no benchmark reaches.
fn rampart_bulkhead() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    BulkheadConfig::new()
        .max_concurrent(GENEROUS)
        .build()
        .expect("valid bulkhead config")
        .layer(noop())
}

/// tower's `ConcurrencyLimit` with a limit no benchmark reaches.
fn tower_concurrency_limit() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    ConcurrencyLimitLayer::new(GENEROUS).layer(noop())
}

/// tower-resilience's bulkhead with a limit no benchmark reaches.
fn tower_resilience_bulkhead() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    TrBulkheadLayer::builder()
        .max_concurrent_calls(GENEROUS)
        .build()
        .expect("valid tower-resilience bulkhead config")
        .layer(noop())
}

/// failsafe has no tower layer: its breaker wraps the inner service's
/// future, after the same `ready()`.
#[derive(Clone)]
struct Failsafe<S> {
    /// The inner service.
    inner: S,
    /// failsafe's default breaker (success rate over a time window, or
    /// consecutive failures).
    breaker: failsafe::StateMachine<FailsafePolicy, ()>,
}

/// The failure policy of `failsafe::Config::new()`.
type FailsafePolicy = failsafe::failure_policy::OrElse<
    failsafe::failure_policy::SuccessRateOverTimeWindow<failsafe::backoff::EqualJittered>,
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::EqualJittered>,
>;

impl<S> Service<()> for Failsafe<S>
where
    S: Service<()>,
{
    type Response = S::Response;
    type Error = failsafe::Error<S::Error>;
    type Future = failsafe::futures::ResponseFuture<S::Future, FailsafePolicy, (), failsafe::Any>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    fn call(&mut self, req: ()) -> Self::Future {
        failsafe::futures::CircuitBreaker::call(&self.breaker, self.inner.call(req))
    }
}

/// failsafe's default breaker around the no-op service.
fn failsafe_breaker() -> Failsafe<impl Service<(), Response = (), Error = Infallible> + Clone> {
    Failsafe {
        inner: noop(),
        breaker: failsafe::Config::new().build(),
    }
}

// === groups ===

/// Every group's settings: modest, so that the whole run stays short on a
/// small machine.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

/// Group `breaker`: a fresh breaker of each kind.
fn breaker(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("breaker");
    bench_service(&mut group, &rt, "bare", noop());
    bench_service(&mut group, &rt, "rampart_count", rampart_count());
    bench_service(&mut group, &rt, "rampart_time", rampart_time());
    bench_service(
        &mut group,
        &rt,
        "tower_resilience",
        tower_resilience_count(),
    );
    bench_service(&mut group, &rt, "failsafe", failsafe_breaker());
    group.finish();
}

/// Group `breaker_time_window_aged`: time-window breakers measured after
/// [`AGED_CALLS`] calls (or as many as [`AGED_BUDGET`] allows) on the same
/// instance, all inside the window.
fn breaker_time_window_aged(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("breaker_time_window_aged");

    bench_aged(&mut group, &rt, "rampart_time", rampart_time());
    bench_aged(
        &mut group,
        &rt,
        "tower_resilience_time",
        tower_resilience_time(),
    );

    group.finish();
}

/// Benchmarks `svc` under `id` in `group` once it has made [`AGED_CALLS`]
/// calls (or as many as [`AGED_BUDGET`] allows). The warm-up runs on the
/// first call of the routine, so it is skipped when a filter excludes
/// `id`, and it is never inside a measured batch.
fn bench_aged<S>(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, id: &str, mut svc: S)
where
    S: Service<()>,
    S::Error: std::fmt::Debug,
{
    let mut warmed = false;
    group.bench_function(id, |b| {
        if !warmed {
            let made = warm(rt, &mut svc, AGED_CALLS, AGED_BUDGET);
            report_warm(id, made);
            warmed = true;
        }
        b.iter_custom(|iters| batch(rt, &mut svc, iters));
    });
}

/// Says how many warm-up calls an aged instance got, since a window that
/// is O(n) per call cannot make them all in the budget.
#[allow(clippy::print_stderr, reason = "the bench's own progress note")]
fn report_warm(id: &str, made: u64) {
    eprintln!(
        "breaker_time_window_aged/{id}: {made} warm-up calls in the window before measuring \
         (target {AGED_CALLS}, budget {AGED_BUDGET:?})"
    );
}

/// Group `bulkhead`: a bulkhead of each kind that never waits.
fn bulkhead(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("bulkhead");
    bench_service(&mut group, &rt, "bare", noop());
    bench_service(&mut group, &rt, "rampart", rampart_bulkhead());
    bench_service(
        &mut group,
        &rt,
        "tower_concurrency_limit",
        tower_concurrency_limit(),
    );
    bench_service(
        &mut group,
        &rt,
        "tower_resilience",
        tower_resilience_bulkhead(),
    );
    group.finish();
}

/// Group `contended`: two threads, one clone each of the same service.
fn contended_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("contended");
    bench_contended(&mut group, "breaker_rampart", rampart_count());
    bench_contended(
        &mut group,
        "breaker_tower_resilience",
        tower_resilience_count(),
    );
    bench_contended(&mut group, "bulkhead_rampart", rampart_bulkhead());
    bench_contended(
        &mut group,
        "tower_concurrency_limit",
        tower_concurrency_limit(),
    );
    group.finish();
}

criterion_group! {
    name = layers;
    config = config();
    targets = breaker, breaker_time_window_aged, bulkhead, contended_group
}
criterion_main!(layers);

//! Rampart's layers (breaker, bulkhead, retry, timeout, rate limit,
//! queue) side by side with their peers.
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
//! | `retry` | `bare`, `rampart_no_retry`, `tower_retry`, `tower_resilience` (the inner service always succeeds: no retry happens) |
//! | `timeout` | `bare`, `rampart` (retry with one attempt and a 1 s per-try timeout), `tower_timeout` |
//! | `rate_limit` | `bare`, `rampart_global`, `rampart_keyed`, `governor_direct`, `tower_resilience` (never limiting) |
//! | `queue` | `rampart`, `tower_buffer` (capacity 1024, worker on the same runtime) |
//! | `contended` | `breaker_rampart`, `breaker_tower_resilience`, `bulkhead_rampart`, `tower_concurrency_limit`, `rate_limit_rampart`, `queue_rampart`, `tower_buffer` (two threads, one clone each) |
//!
//! Run with `cargo bench -p rampart-benches --bench layers`, then
//! `cargo run -p rampart-benches --bin bench-report`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use rampart_backpressure::{Admission, QueueConfig, RateLimitConfig};
use rampart_breaker::BreakerConfig;
use rampart_bulkhead::BulkheadConfig;
use rampart_core::keyed::KeyedConfig;
use rampart_retry::RetryConfig;
use tokio::runtime::Runtime;

mod common;
use common::{config, now, runtime};
use tower::buffer::Buffer;
use tower::limit::ConcurrencyLimitLayer;
use tower::timeout::TimeoutLayer;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_resilience::bulkhead::BulkheadLayer as TrBulkheadLayer;
use tower_resilience::circuitbreaker::{CircuitBreakerLayer, SlidingWindowType};
use tower_resilience::ratelimiter::RateLimiterLayer as TrRateLimiterLayer;
use tower_resilience::retry::RetryLayer as TrRetryLayer;

#[path = "../peers/tower_retry.rs"]
mod tower_retry_peer;
use tower_retry_peer::BudgetedRetry;

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

/// A rate no benchmark reaches (one call per nanosecond), so no rate
/// limiter ever rejects.
const HUGE_RATE: u32 = 1_000_000_000;

/// The burst of every rate limiter under test. With one token per
/// nanosecond this is a tolerance of about 1 s: a GCRA judges a call by
/// the clock it read, so a thread descheduled between reading the clock
/// and updating the state (milliseconds on a shared two-core machine)
/// would otherwise find the other thread's calls ahead of it and be
/// refused under `contended`.
const HUGE_BURST: u32 = 1_000_000_000;

/// The per-try timeout and timeout under test: never reached.
const TIMEOUT: Duration = Duration::from_secs(1);

/// The capacity of every queue under test.
const QUEUE_CAPACITY: usize = 1024;

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

/// Rampart's retry with its defaults (3 attempts, budget, backoff): the
/// inner service always succeeds, so no retry happens.
fn rampart_retry() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    RetryConfig::new()
        .build()
        .expect("valid retry config")
        .layer(noop())
}

/// Rampart's retry without a budget: only `max_attempts` limits retries.
fn rampart_retry_no_budget() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    RetryConfig::new()
        .no_budget()
        .build()
        .expect("valid retry config")
        .layer(noop())
}

/// tower's `Retry` with [`BudgetedRetry`].
fn tower_retry() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    tower::retry::RetryLayer::new(BudgetedRetry::new()).layer(noop())
}

/// The smallest tower retry policy: clone the request, never retry a
/// success (and, here, nothing fails). No budget, no attempt count.
#[derive(Clone, Copy)]
struct NeverRetry;

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for NeverRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut Req, _result: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// tower's `Retry` with [`NeverRetry`].
fn tower_retry_no_budget() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    tower::retry::RetryLayer::new(NeverRetry).layer(noop())
}

/// tower-resilience's retry with its defaults.
fn tower_resilience_retry() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    TrRetryLayer::<(), (), Infallible>::builder()
        .build()
        .layer(noop())
}

/// Rampart's timeout: a retry layer with one attempt and a per-try
/// timeout.
fn rampart_timeout() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    RetryConfig::new()
        .max_attempts(1)
        .per_try_timeout(TIMEOUT)
        .build()
        .expect("valid retry config")
        .layer(noop())
}

/// tower's `Timeout`.
fn tower_timeout() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    TimeoutLayer::new(TIMEOUT).layer(noop())
}

/// The rate of every rampart rate limiter under test: never limits.
fn rampart_rate() -> RateLimitConfig {
    RateLimitConfig::new()
        .rate(HUGE_RATE, Duration::from_secs(1))
        .burst(HUGE_BURST)
        .admission(Admission::FailFast)
}

/// Rampart's global rate limiter.
fn rampart_rate_global() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    rampart_rate()
        .build()
        .expect("valid rate limit config")
        .layer(noop())
}

/// Rampart's keyed rate limiter, every request under one key.
fn rampart_rate_keyed() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    rampart_rate()
        .build_keyed(|_: &()| 0_u8, KeyedConfig::default())
        .expect("valid keyed rate limit config")
        .layer(noop())
}

/// governor's direct (unkeyed) limiter, default clock (`std`'s
/// `Instant` with the features used here).
type GovernorLimiter = governor::DefaultDirectRateLimiter;

/// governor has no tower layer: a tiny adapter calls its `check()` and
/// then the inner service, after the same `ready()`.
#[derive(Clone)]
struct Governor<S> {
    /// The inner service.
    inner: S,
    /// The limiter, shared by clones.
    limiter: Arc<GovernorLimiter>,
}

/// The call was rate limited by governor.
#[derive(Debug)]
struct GovernorLimited;

/// The inner future, or governor's rejection.
enum GovernorFuture<F> {
    /// Admitted: the inner service's future.
    Inner(F),
    /// Rejected.
    Limited,
}

impl<F, T, E> Future for GovernorFuture<F>
where
    F: Future<Output = Result<T, E>> + Unpin,
{
    type Output = Result<T, Result<E, GovernorLimited>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            GovernorFuture::Inner(f) => Pin::new(f).poll(cx).map_err(Ok),
            GovernorFuture::Limited => Poll::Ready(Err(Err(GovernorLimited))),
        }
    }
}

impl<S> Service<()> for Governor<S>
where
    S: Service<()>,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = Result<S::Error, GovernorLimited>;
    type Future = GovernorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Ok)
    }

    fn call(&mut self, req: ()) -> Self::Future {
        match self.limiter.check() {
            Ok(()) => GovernorFuture::Inner(self.inner.call(req)),
            Err(_) => GovernorFuture::Limited,
        }
    }
}

/// governor's direct limiter at the same rate and burst, around the no-op
/// service.
fn governor_direct() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    let rate = NonZeroU32::new(HUGE_RATE).expect("non-zero rate");
    let burst = NonZeroU32::new(HUGE_BURST).expect("non-zero burst");
    Governor {
        inner: noop(),
        limiter: Arc::new(GovernorLimiter::direct(
            governor::Quota::per_second(rate).allow_burst(burst),
        )),
    }
}

/// tower-resilience's rate limiter (its default fixed window), with a
/// limit no benchmark reaches.
fn tower_resilience_rate() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    TrRateLimiterLayer::builder()
        .limit_for_period(HUGE_RATE as usize)
        .refresh_period(Duration::from_secs(1))
        .build()
        .expect("valid tower-resilience rate limiter config")
        .layer(noop())
}

/// Rampart's bounded queue; spawns its worker, so call it inside a
/// runtime.
fn rampart_queue() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    QueueConfig::new()
        .capacity(QUEUE_CAPACITY)
        .admission(Admission::FailFast)
        .build::<()>()
        .expect("valid queue config")
        .layer(noop())
}

/// tower's `Buffer`; spawns its worker, so call it inside a runtime.
fn tower_buffer() -> impl Service<(), Error: std::fmt::Debug> + Clone + Send {
    Buffer::new(noop(), QUEUE_CAPACITY)
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

/// Group `retry`: a retry layer of each kind whose inner service always
/// succeeds.
fn retry(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("retry");
    bench_service(&mut group, &rt, "bare", noop());
    bench_service(&mut group, &rt, "rampart_no_retry", rampart_retry());
    bench_service(&mut group, &rt, "tower_retry", tower_retry());
    bench_service(
        &mut group,
        &rt,
        "rampart_no_budget",
        rampart_retry_no_budget(),
    );
    bench_service(
        &mut group,
        &rt,
        "tower_retry_no_budget",
        tower_retry_no_budget(),
    );
    bench_service(
        &mut group,
        &rt,
        "tower_resilience",
        tower_resilience_retry(),
    );
    group.finish();
}

/// Group `timeout`: a timeout of each kind that never fires.
fn timeout(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("timeout");
    bench_service(&mut group, &rt, "bare", noop());
    bench_service(&mut group, &rt, "rampart", rampart_timeout());
    bench_service(&mut group, &rt, "tower_timeout", tower_timeout());
    group.finish();
}

/// Group `rate_limit`: a rate limiter of each kind that never limits.
fn rate_limit(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("rate_limit");
    bench_service(&mut group, &rt, "bare", noop());
    bench_service(&mut group, &rt, "rampart_global", rampart_rate_global());
    bench_service(&mut group, &rt, "rampart_keyed", rampart_rate_keyed());
    bench_service(&mut group, &rt, "governor_direct", governor_direct());
    bench_service(&mut group, &rt, "tower_resilience", tower_resilience_rate());
    group.finish();
}

/// Group `queue`: a bounded queue of each kind, its worker spawned on the
/// measuring runtime (each call hands the request to the worker task and
/// waits for its answer).
fn queue(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("queue");
    let (rampart, buffer) = {
        let _entered = rt.enter();
        (rampart_queue(), tower_buffer())
    };
    bench_service(&mut group, &rt, "rampart", rampart);
    bench_service(&mut group, &rt, "tower_buffer", buffer);
    group.finish();
}

/// A runtime of its own thread for the workers of the contended queues:
/// the two calling threads each drive only their own current-thread
/// runtime, so a worker spawned on either would stall whenever that
/// thread is between batches.
fn worker_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a one-thread runtime for queue workers")
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
    bench_contended(&mut group, "rate_limit_rampart", rampart_rate_global());
    let workers = worker_runtime();
    let (rampart, buffer) = {
        let _entered = workers.enter();
        (rampart_queue(), tower_buffer())
    };
    bench_contended(&mut group, "queue_rampart", rampart);
    bench_contended(&mut group, "tower_buffer", buffer);
    group.finish();
}

criterion_group! {
    name = layers;
    config = config();
    targets = breaker, breaker_time_window_aged, bulkhead, retry, timeout, rate_limit, queue,
        contended_group
}
criterion_main!(layers);

//! Rampart's cache (issue 4) side by side with the stores and peers it is
//! built on or competes with.
//!
//! Every layer function measures one `ready().call()` round trip through
//! the cache layer in front of a no-op service (answers at once; on these
//! paths it is never called). Layers, stores and connections are built and
//! filled once, outside the measured loop; calls run in batches on a
//! current-thread tokio runtime. The raw functions measure the store
//! operation alone, on the same key and value types.
//!
//! Groups and function ids are fixed: `bench-report` reads
//! `target/criterion/<group>/<function>/new/estimates.json`.
//!
//! | group | functions |
//! |---|---|
//! | `cache_hit` | `moka_future_get`, `rampart_local_hit`, `tower_resilience_cache_hit` |
//! | `cache_remote` | `redis_get_raw`, `rampart_two_tier_local_hit`, `rampart_two_tier_remote_hit` (real Redis; skipped with a message when unreachable) |
//! | `bloom` | `bloomfilter_check`, `rampart_absent_key_rejected` (absent keys) |
//!
//! Run with `cargo bench -p rampart-benches --bench cache`, then
//! `cargo run -p rampart-benches --bin bench-report -- --cache`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bloomfilter::Bloom;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use rampart_cache::CacheConfig;
use rampart_cache::bloom::{BloomConfig, KnownKeys};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_resilience::cache::CacheLayer as TrCacheLayer;

/// The key every hit reads.
const KEY: u64 = 42;

/// The value of every hit: 32 bytes behind an `Arc`, so a clone is one
/// atomic increment and the figures show the cache, not an allocator.
const VALUE: &str = "a cached value of thirty-two b.";

/// Capacity of every local tier: far more than the keys used.
const CAPACITY: u64 = 10_000;

/// Lifetime of every entry: far longer than a run.
const TTL: Duration = Duration::from_secs(3600);

/// Keys the bloom filters are sized for and filled with (the defaults of
/// [`BloomConfig`]: 100,000 keys at 1 %).
const BLOOM_KEYS: u64 = 100_000;

/// The bloom filters' false-positive rate.
const BLOOM_FP_RATE: f64 = 0.01;

/// The raw bloom filter's hash seed (the crate's `random` feature, which
/// would draw one, is off in this workspace).
const BLOOM_SEED: [u8; 32] = *b"rampart-benches raw bloom filter";

/// Absent keys cycled through by the bloom group, each one rejected by
/// the filter under test (so the figure averages over where the check
/// finds its first unset bit).
const ABSENT_KEYS: usize = 1024;

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

/// The value every cache in the `cache_hit` group holds under [`KEY`].
fn value() -> Arc<str> {
    Arc::from(VALUE)
}

/// The no-op upstream of the `cache_hit` group: answers at once. On a hit
/// it is never called.
fn noop_call(_req: u64) -> Ready<Result<Arc<str>, Infallible>> {
    ready(Ok(value()))
}

/// One call: wait for readiness, call with `req`, await, and check the
/// answer (a failed call would measure the wrong path).
async fn ready_call<S>(svc: &mut S, req: u64) -> S::Response
where
    S: Service<u64>,
    S::Error: std::fmt::Debug,
{
    let ready = svc.ready().await.expect("service ready");
    match black_box(ready.call(req).await) {
        Ok(resp) => resp,
        Err(e) => panic!("call failed: {e:?}"),
    }
}

/// Benchmarks `svc` under `id` in `group`: one call per iteration,
/// `iters` of them inside one `block_on`, with the requests of `reqs` in
/// turn (a power-of-two count, so picking the next is a mask).
fn bench_service<S>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    id: &str,
    svc: &mut S,
    reqs: &[u64],
) where
    S: Service<u64>,
    S::Error: std::fmt::Debug,
{
    assert!(reqs.len().is_power_of_two());
    let mask = reqs.len() - 1;
    let mut next = 0_usize;
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = now();
                for _ in 0..iters {
                    ready_call(svc, reqs[next & mask]).await;
                    next = next.wrapping_add(1);
                }
                start.elapsed()
            })
        });
    });
}

/// Every group's settings, as in the `layers` bench.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

/// Prints a note of the bench's own (setup, skip) to stderr.
#[allow(clippy::print_stderr, reason = "the bench's own progress note")]
fn note(message: &str) {
    eprintln!("{message}");
}

// === group cache_hit ===

/// Group `cache_hit`: a present key read from moka directly, through
/// rampart's cache layer, and through tower-resilience's.
fn cache_hit(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("cache_hit");

    // The raw store: what rampart's local tier is built on.
    let moka: moka::future::Cache<u64, Arc<str>> = moka::future::Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_live(TTL)
        .build();
    rt.block_on(moka.insert(KEY, value()));
    group.bench_function("moka_future_get", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = now();
                for _ in 0..iters {
                    let hit = moka.get(black_box(&KEY)).await;
                    assert!(black_box(hit).is_some(), "moka lost the key");
                }
                start.elapsed()
            })
        });
    });

    // rampart: loaded by one call, then every call is a hit.
    let layer = CacheConfig::new()
        .max_capacity(CAPACITY)
        .ttl(TTL)
        .builder(|id: &u64| Some(*id))
        .build()
        .expect("valid cache config");
    let handle = layer.handle();
    let mut rampart = layer.layer(service_fn(noop_call));
    rt.block_on(ready_call(&mut rampart, KEY));
    bench_service(&mut group, &rt, "rampart_local_hit", &mut rampart, &[KEY]);
    let stats = handle.stats();
    assert_eq!(
        stats.loads, 1,
        "rampart_local_hit measured misses: {stats:?}"
    );

    // tower-resilience: likewise.
    let mut tower_resilience = TrCacheLayer::builder()
        .max_size(CAPACITY as usize)
        .ttl(TTL)
        .key_extractor(|id: &u64| *id)
        .build()
        .expect("valid tower-resilience cache config")
        .layer(service_fn(noop_call));
    rt.block_on(ready_call(&mut tower_resilience, KEY));
    bench_service(
        &mut group,
        &rt,
        "tower_resilience_cache_hit",
        &mut tower_resilience,
        &[KEY],
    );

    group.finish();
}

// === group bloom ===

/// [`ABSENT_KEYS`] keys above every known key that `might_exist` rejects.
fn absent_keys(might_exist: impl Fn(u64) -> bool) -> Vec<u64> {
    let keys: Vec<u64> = (BLOOM_KEYS * 10..)
        .filter(|&k| !might_exist(k))
        .take(ABSENT_KEYS)
        .collect();
    assert_eq!(keys.len(), ABSENT_KEYS);
    keys
}

/// Group `bloom`: absent keys checked by a raw bloom filter, and requested
/// through rampart's cache layer with a [`KnownKeys`] filter, which
/// answers them "absent" without touching the tiers or the upstream. Both
/// filters are sized for and filled with [`BLOOM_KEYS`] keys at
/// [`BLOOM_FP_RATE`]; each function cycles through [`ABSENT_KEYS`] keys
/// its own filter rejects.
fn bloom(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("bloom");

    let mut raw =
        Bloom::<u64>::new_for_fp_rate_with_seed(BLOOM_KEYS as usize, BLOOM_FP_RATE, &BLOOM_SEED)
            .expect("a valid bloom filter size");
    for k in 0..BLOOM_KEYS {
        raw.set(&k);
    }
    let absent = absent_keys(|k| raw.check(&k));
    let mask = ABSENT_KEYS - 1;
    let mut next = 0_usize;
    group.bench_function("bloomfilter_check", |b| {
        b.iter(|| {
            let passed = raw.check(black_box(&absent[next & mask]));
            next = next.wrapping_add(1);
            assert!(!black_box(passed), "an absent key passed");
        });
    });

    let known = KnownKeys::<u64>::new(
        &BloomConfig::new()
            .expected_items(BLOOM_KEYS as usize)
            .false_positive_rate(BLOOM_FP_RATE),
        None,
    );
    for k in 0..BLOOM_KEYS {
        known.insert(&k);
    }
    let absent = absent_keys(|k| known.might_exist(&k));
    let layer = CacheConfig::new()
        .max_capacity(CAPACITY)
        .ttl(TTL)
        .builder(|id: &u64| Some(*id))
        .known_keys(known, |_| None)
        .build()
        .expect("valid cache config");
    let handle = layer.handle();
    let mut rampart = layer.layer(service_fn(|_: u64| {
        ready(Ok::<_, Infallible>(Some(value())))
    }));
    bench_service(
        &mut group,
        &rt,
        "rampart_absent_key_rejected",
        &mut rampart,
        &absent,
    );
    let stats = handle.stats();
    assert_eq!(
        (stats.loads, stats.misses),
        (0, 0),
        "an absent key went past the filter: {stats:?}"
    );

    group.finish();
}

// === group cache_remote ===

/// The Redis the group talks to: `RAMPART_REDIS_URL`, by default the one
/// `scripts/services.sh` starts.
fn redis_url() -> String {
    std::env::var("RAMPART_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A connection manager on `url`, or why there is none, within a few
/// seconds.
async fn connect(url: &str) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1);
    let mut conn = tokio::time::timeout(
        Duration::from_secs(3),
        ConnectionManager::new_with_config(client, config),
    )
    .await
    .map_err(|_| "no answer within 3 s".to_owned())?
    .map_err(|e| e.to_string())?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Group `cache_remote`: a value read from a real Redis directly and
/// through rampart's two-tier cache. Skipped, saying so, when Redis is not
/// reachable.
fn cache_remote(c: &mut Criterion) {
    let rt = runtime();
    let url = redis_url();
    let mut conn = match rt.block_on(connect(&url)) {
        Ok(conn) => conn,
        Err(e) => {
            note(&format!(
                "cache_remote: skipped: Redis at {url} is unreachable ({e}); start it with \
                 `scripts/services.sh` (or set RAMPART_REDIS_URL)"
            ));
            return;
        }
    };
    let mut group = c.benchmark_group("cache_remote");

    let key = "rampart:bench:cache:42";
    rt.block_on(async {
        redis::cmd("SET")
            .arg(key)
            .arg(VALUE.as_bytes())
            .arg("EX")
            .arg(TTL.as_secs())
            .query_async::<()>(&mut conn)
            .await
            .expect("SET the bench's value");
    });
    group.bench_function("redis_get_raw", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = now();
                for _ in 0..iters {
                    let got: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(black_box(key))
                        .query_async(&mut conn)
                        .await
                        .expect("GET");
                    assert!(black_box(got).is_some(), "Redis lost the key");
                }
                start.elapsed()
            })
        });
    });

    group.finish();
}

criterion_group! {
    name = cache;
    config = config();
    targets = cache_hit, cache_remote, bloom
}
criterion_main!(cache);

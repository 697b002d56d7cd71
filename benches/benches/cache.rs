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
use rampart_cache::bloom::{BloomConfig, KnownKeys};
use rampart_cache::remote::{
    BoxFuture, Codec, GuardConfig, GuardedRemote, RedisCache, RedisConfig, RemoteCache, RemoteError,
};
use rampart_cache::{CacheConfig, Handle};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::runtime::Runtime;

mod common;
use common::{config, note, now, runtime, timed_calls};
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

/// The prefix of the bench's keys in Redis.
const REDIS_PREFIX: &str = "rampart:bench:cache:";

/// The value of the remote group: it crosses the wire, so it is a plain
/// serialisable `String` (the same 31 bytes as [`VALUE`]).
fn remote_value() -> String {
    VALUE.to_owned()
}

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

/// The remote tier as a deployment would configure it: rampart's Redis
/// store behind its guard (100 ms timeout and a breaker, the defaults).
async fn guarded_redis(url: &str) -> GuardedRemote<RedisCache> {
    let redis = RedisConfig::new()
        .url(url)
        .prefix(REDIS_PREFIX)
        .connect()
        .await
        .expect("rampart's Redis store connects where the raw client did");
    GuardConfig::new()
        .build(redis)
        .expect("valid remote guard config")
}

/// A remote store that passes every call to `inner` except
/// [`invalidate`](RemoteCache::invalidate), which does nothing: the
/// remote-hit benchmark drops the key from the local tier through
/// [`Handle::invalidate`](rampart_cache::Handle::invalidate) between calls
/// and must leave it in Redis.
struct LocalInvalidateOnly<R>(R);

impl<R: RemoteCache> RemoteCache for LocalInvalidateOnly<R> {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        self.0.get(key)
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.0.set(key, value, ttl)
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.0.delete(key)
    }

    fn invalidate<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(ready(Ok(())))
    }

    fn invalidations(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        self.0.invalidations()
    }
}

/// A two-tier cache over `store`, keyed by the request, in front of a
/// no-op upstream (never called here: every value comes from a tier).
fn two_tier(
    store: Arc<dyn RemoteCache>,
) -> (
    impl Service<u64, Response = String, Error: std::fmt::Debug>,
    Handle<u64>,
) {
    let layer = CacheConfig::new()
        .max_capacity(CAPACITY)
        .ttl(TTL)
        .builder(|id: &u64| Some(*id))
        .remote(
            store,
            Codec::new(1),
            |id: &u64| id.to_string(),
            |name: &str| name.parse().ok(),
        )
        .build()
        .expect("valid cache config");
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_: u64| {
        ready(Ok::<_, Infallible>(remote_value()))
    }));
    (svc, handle)
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

    // The value as the two-tier cache stores it, under the name it uses.
    let name = format!("{REDIS_PREFIX}{KEY}");
    let bytes = Codec::new(1)
        .encode(&remote_value())
        .expect("a string encodes");
    rt.block_on(async {
        redis::cmd("SET")
            .arg(&name)
            .arg(&bytes)
            .arg("EX")
            .arg(TTL.as_secs())
            .query_async::<()>(&mut conn)
            .await
            .expect("SET the bench's value");
    });

    // The raw GET, timed per call like the remote hit below.
    group.bench_function("redis_get_raw", |b| {
        b.iter_custom(|iters| {
            rt.block_on(timed_calls(
                iters,
                async || {
                    let got: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(black_box(&name))
                        .query_async(&mut conn)
                        .await
                        .expect("GET");
                    assert_eq!(black_box(got).as_deref(), Some(&bytes[..]));
                },
                || ready(()),
            ))
        });
    });

    // The key in the local tier: read once from Redis, then local hits.
    let (mut local, handle) = two_tier(Arc::new(rt.block_on(guarded_redis(&url))));
    rt.block_on(ready_call(&mut local, KEY));
    bench_service(
        &mut group,
        &rt,
        "rampart_two_tier_local_hit",
        &mut local,
        &[KEY],
    );
    let stats = handle.stats();
    assert_eq!(
        (stats.loads, stats.remote_hits, stats.remote_errors),
        (0, 1, 0),
        "rampart_two_tier_local_hit measured other paths: {stats:?}"
    );

    // The key only in Redis: each call misses the local tier, reads Redis,
    // decodes and fills the local tier; between calls (not timed) the key
    // is dropped from the local tier only.
    let store = LocalInvalidateOnly(rt.block_on(guarded_redis(&url)));
    let (mut remote, handle) = two_tier(Arc::new(store));
    group.bench_function("rampart_two_tier_remote_hit", |b| {
        b.iter_custom(|iters| {
            rt.block_on(timed_calls(
                iters,
                async || {
                    ready_call(&mut remote, KEY).await;
                },
                || async {
                    handle.invalidate(&KEY).await.expect("a local invalidation");
                },
            ))
        });
    });
    let stats = handle.stats();
    assert_eq!(
        (stats.loads, stats.remote_errors),
        (0, 0),
        "rampart_two_tier_remote_hit measured other paths: {stats:?}"
    );
    assert_eq!(
        (stats.remote_hits, stats.hits),
        (stats.misses, 0),
        "rampart_two_tier_remote_hit: every call must be a remote hit: {stats:?}"
    );

    group.finish();
    rt.block_on(async {
        redis::cmd("DEL")
            .arg(&name)
            .query_async::<()>(&mut conn)
            .await
            .expect("DEL the bench's value");
    });
}

criterion_group! {
    name = cache;
    config = config();
    targets = cache_hit, cache_remote, bloom
}
criterion_main!(cache);

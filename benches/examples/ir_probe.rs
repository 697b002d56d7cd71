//! Makes N calls through one layer, for counting instructions per call
//! under callgrind (`benches/ir.sh`), a figure that does not move with the
//! machine's load the way nanoseconds do.
//!
//! `cargo run --release -p rampart-benches --example ir_probe -- LAYER N`
//! with LAYER one of `bare`, `breaker_count`, `breaker_time`, `bulkhead`,
//! `tower_concurrency_limit`, `retry`, `retry_no_budget`, `tower_retry`, `rate_limit`,
//! or one of the cache paths of `benches/cache.rs` (issue 4, same setup,
//! no Redis): `cache_moka_get`, `cache_local_hit`,
//! `cache_tower_resilience_hit`, `cache_bloom_check`,
//! `cache_known_keys_check`, `cache_absent_rejected`, and
//! `cache_remote_hit_mem` (a two-tier remote hit whose store answers from
//! memory at once: the CPU the layer adds around a Redis `GET`).
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
            other if other.starts_with("cache_") => cache::probe(other, n).await,
            other => {
                eprintln!("unknown layer {other:?}");
                std::process::exit(2);
            }
        }
    });
}

/// The cache paths (issue 4), built as `benches/cache.rs` builds them.
mod cache {
    use std::convert::Infallible;
    use std::future::ready;
    use std::hint::black_box;
    use std::sync::Arc;
    use std::time::Duration;

    use rampart_cache::CacheConfig;
    use rampart_cache::bloom::{BloomConfig, KnownKeys};
    use rampart_cache::remote::{BoxFuture, Codec, RemoteCache, RemoteError};
    use tower::{Layer, Service, ServiceExt, service_fn};

    const KEY: u64 = 42;
    const VALUE: &str = "a cached value of thirty-two b.";
    const TTL: Duration = Duration::from_secs(3600);
    const BLOOM_KEYS: u64 = 100_000;

    /// `n` calls on `svc` with the requests of `reqs` in turn (a
    /// power-of-two count).
    async fn run<S: Service<u64>>(mut svc: S, reqs: &[u64], n: u64)
    where
        S::Error: std::fmt::Debug,
    {
        let mask = reqs.len() - 1;
        for i in 0..n {
            let r = svc
                .ready()
                .await
                .expect("ready")
                .call(reqs[i as usize & mask])
                .await;
            black_box(r.is_ok());
        }
    }

    /// 1,024 keys above the known ones that `might_exist` rejects.
    fn absent(might_exist: impl Fn(u64) -> bool) -> Vec<u64> {
        (BLOOM_KEYS * 10..)
            .filter(|&k| !might_exist(k))
            .take(1024)
            .collect()
    }

    fn known_keys() -> KnownKeys<u64> {
        let known = KnownKeys::new(
            &BloomConfig::new().expected_items(BLOOM_KEYS as usize),
            None,
        );
        for k in 0..BLOOM_KEYS {
            known.insert(&k);
        }
        known
    }

    /// A store holding one value in memory, answering at once.
    struct Memory(Vec<u8>);

    impl RemoteCache for Memory {
        fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
            Box::pin(ready(Ok(Some(self.0.clone()))))
        }
        fn set<'a>(
            &'a self,
            _: &'a str,
            _: Vec<u8>,
            _: Duration,
        ) -> BoxFuture<'a, Result<(), RemoteError>> {
            Box::pin(ready(Ok(())))
        }
        fn delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
            Box::pin(ready(Ok(())))
        }
        fn invalidate<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
            Box::pin(ready(Ok(())))
        }
    }

    pub(super) async fn probe(which: &str, n: u64) {
        let value = || -> Arc<str> { Arc::from(VALUE) };
        let noop = service_fn(move |_: u64| ready(Ok::<_, Infallible>(value())));
        let local = || {
            CacheConfig::new()
                .max_capacity(10_000)
                .ttl(TTL)
                .builder(|id: &u64| Some(*id))
        };
        match which {
            "cache_moka_get" => {
                let moka: moka::future::Cache<u64, Arc<str>> = moka::future::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(TTL)
                    .build();
                moka.insert(KEY, value()).await;
                for _ in 0..n {
                    black_box(moka.get(black_box(&KEY)).await.is_some());
                }
            }
            "cache_local_hit" => {
                let mut svc = local().build().expect("valid").layer(noop);
                run(&mut svc, &[KEY], 1).await;
                run(svc, &[KEY], n).await;
            }
            "cache_tower_resilience_hit" => {
                let mut svc = tower_resilience::cache::CacheLayer::builder()
                    .max_size(10_000)
                    .ttl(TTL)
                    .key_extractor(|id: &u64| *id)
                    .build()
                    .expect("valid")
                    .layer(noop);
                run(&mut svc, &[KEY], 1).await;
                run(svc, &[KEY], n).await;
            }
            "cache_bloom_check" => {
                let mut bloom = bloomfilter::Bloom::<u64>::new_for_fp_rate_with_seed(
                    BLOOM_KEYS as usize,
                    0.01,
                    &[7; 32],
                )
                .expect("valid");
                for k in 0..BLOOM_KEYS {
                    bloom.set(&k);
                }
                let keys = absent(|k| bloom.check(&k));
                for i in 0..n {
                    black_box(bloom.check(black_box(&keys[i as usize & 1023])));
                }
            }
            "cache_known_keys_check" => {
                let known = known_keys();
                let keys = absent(|k| known.might_exist(&k));
                for i in 0..n {
                    black_box(known.might_exist(black_box(&keys[i as usize & 1023])));
                }
            }
            "cache_absent_rejected" => {
                let known = known_keys();
                let keys = absent(|k| known.might_exist(&k));
                let svc = CacheConfig::new()
                    .max_capacity(10_000)
                    .ttl(TTL)
                    .builder(|id: &u64| Some(*id))
                    .known_keys(known, |_| None)
                    .build()
                    .expect("valid")
                    .layer(service_fn(move |_: u64| {
                        ready(Ok::<_, Infallible>(Some(value())))
                    }));
                run(svc, &keys, n).await;
            }
            "cache_remote_hit_mem" => {
                let codec = Codec::new(1);
                let store = Memory(codec.encode(&VALUE.to_owned()).expect("encodes"));
                let layer = CacheConfig::new()
                    .max_capacity(10_000)
                    .ttl(TTL)
                    .builder(|id: &u64| Some(*id))
                    .remote(
                        Arc::new(store),
                        codec,
                        |id: &u64| id.to_string(),
                        |s: &str| s.parse().ok(),
                    )
                    .build()
                    .expect("valid");
                let handle = layer.handle();
                let mut svc = layer.layer(service_fn(|_: u64| {
                    ready(Ok::<_, Infallible>(VALUE.to_owned()))
                }));
                for _ in 0..n {
                    run(&mut svc, &[KEY], 1).await;
                    handle.invalidate(&KEY).await.expect("in memory");
                }
            }
            other => {
                eprintln!("unknown cache path {other:?}");
                std::process::exit(2);
            }
        }
    }
}

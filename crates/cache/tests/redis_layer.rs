//! The cache layer over real Redis: two caches in one process sharing one
//! Redis stay coherent (a load fills Redis for the other; an invalidation
//! drops the other's local copy), and a cache whose Redis dies keeps
//! answering from its local tier and the upstream, then uses Redis again
//! when it returns.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis::{
    PrivateRedis, eventually, free_port, quick_failover, shared_cache, subscribed, unique_prefix,
};
use common::upstream;
use rampart_cache::remote::{Codec, RemoteCache};
use rampart_cache::{CacheConfig, CacheLayer};
use tower::{Layer, ServiceExt};

type Users = CacheLayer<String, Option<String>, String, Option<String>>;

fn two_tier(store: Arc<dyn RemoteCache>) -> Users {
    CacheConfig::new()
        .ttl(Duration::from_secs(60))
        .ttl_jitter(0.0)
        .builder(|k: &String| Some(k.clone()))
        .remote(
            store,
            Codec::new(1),
            |k: &String| format!("users:{k}"),
            |name: &str| name.strip_prefix("users:").map(str::to_owned),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn two_caches_over_one_redis_stay_coherent() {
    let prefix = unique_prefix("layer-coherence");
    let (store_a, store_b) = (shared_cache(&prefix).await, shared_cache(&prefix).await);
    subscribed(&store_a).await;
    subscribed(&store_b).await;
    let probe = store_b.clone();
    let (up, svc) = upstream(Duration::ZERO);
    let (a, b) = (two_tier(Arc::new(store_a)), two_tier(Arc::new(store_b)));
    let (ha, hb) = (a.handle(), b.handle());
    let (a, b) = (a.layer(svc.clone()), b.layer(svc));

    // A loads from the upstream and fills Redis; B then reads Redis.
    assert_eq!(
        a.clone().oneshot("ada".into()).await.unwrap().as_deref(),
        Some("ada@0")
    );
    eventually(Duration::from_secs(3), "Redis filled", || {
        let probe = probe.clone();
        async move { matches!(probe.get("users:ada").await, Ok(Some(_))) }
    })
    .await;
    assert_eq!(
        b.clone().oneshot("ada".into()).await.unwrap().as_deref(),
        Some("ada@0")
    );
    assert_eq!(up.calls(), 1, "B was answered by Redis");
    assert_eq!(hb.stats().remote_hits, 1);

    // The value changes upstream; A invalidates: Redis and B's local copy go.
    up.bump();
    ha.invalidate(&"ada".to_owned()).await.unwrap();
    eventually(Duration::from_secs(3), "B dropped its copy", || async {
        hb.stats().invalidations >= 1
    })
    .await;
    assert_eq!(
        b.clone().oneshot("ada".into()).await.unwrap().as_deref(),
        Some("ada@1")
    );
    assert_eq!(up.calls(), 2, "B loaded the new value");
    assert_eq!(
        a.oneshot("ada".into()).await.unwrap().as_deref(),
        Some("ada@1")
    );
}

#[tokio::test]
async fn a_redis_outage_is_served_around_and_redis_is_used_again_after() {
    let mut server = PrivateRedis::start(free_port()).await;
    let (redis, guard) = quick_failover(&server, "layer-outage");
    let guarded = guard.build(redis.connect().await.unwrap()).unwrap();
    let store: Arc<dyn RemoteCache> = Arc::new(guarded);
    let (up, svc) = upstream(Duration::ZERO);
    let layer = two_tier(Arc::clone(&store));
    let h = layer.handle();
    let svc = layer.layer(svc);

    svc.clone().oneshot("before".into()).await.unwrap();
    eventually(Duration::from_secs(3), "Redis filled", || {
        let store = Arc::clone(&store);
        async move { matches!(store.get("users:before").await, Ok(Some(_))) }
    })
    .await;

    // Redis dies: cached keys are still hits, new keys are loaded from the
    // upstream, no caller sees an error, and the failures are counted.
    server.kill().await;
    let calls = up.calls();
    let answer = tokio::time::timeout(Duration::from_secs(2), svc.clone().oneshot("before".into()))
        .await
        .expect("a local hit does not wait for Redis");
    assert_eq!(answer.unwrap().as_deref(), Some("before@0"));
    for i in 0..10 {
        let key = format!("during-{i}");
        let answer = tokio::time::timeout(Duration::from_secs(2), svc.clone().oneshot(key.clone()))
            .await
            .expect("a miss does not hang on a dead Redis");
        assert_eq!(answer.unwrap(), Some(format!("{key}@0")));
    }
    assert_eq!(up.calls(), calls + 10);
    let s = h.stats();
    assert!(s.remote_errors >= 1, "{s:?}");
    assert_eq!(s.load_failures, 0);

    // Redis returns (empty): the cache fills it again by itself.
    let _server = PrivateRedis::start(server.port).await;
    let mut n = 0;
    eventually(Duration::from_secs(8), "Redis used again", || {
        n += 1;
        let key = format!("after-{n}");
        let (svc, store) = (svc.clone(), Arc::clone(&store));
        async move {
            svc.oneshot(key.clone()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            matches!(store.get(&format!("users:{key}")).await, Ok(Some(_)))
        }
    })
    .await;
}

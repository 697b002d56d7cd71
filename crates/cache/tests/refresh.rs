//! Hot-key expiry: stale-while-revalidate and probabilistic early refresh.

mod common;

use std::time::Duration;

use common::{key, settle, upstream};
use rampart_cache::CacheConfig;
use tokio::task::JoinSet;
use tower::{Layer, ServiceExt};

#[tokio::test(start_paused = true)]
async fn stale_values_are_served_at_once_while_one_refresh_runs() {
    let (up, svc) = upstream(Duration::from_millis(100));
    let layer = CacheConfig::new()
        .ttl(Duration::from_secs(10))
        .ttl_jitter(0.0)
        .stale_while_revalidate(Duration::from_secs(5))
        .builder(key)
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(svc);
    svc.clone().oneshot("hot".into()).await.unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    up.bump();

    // Many concurrent requests after expiry: all answered stale at once
    // (no time passes), one refresh.
    let started = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..200 {
        tasks.spawn(svc.clone().oneshot("hot".to_string()));
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap().unwrap(), "hot@0");
    }
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "stale answers do not wait"
    );
    assert_eq!(h.stats().stale_served, 200);
    assert_eq!(h.stats().refreshes, 1);

    tokio::time::sleep(Duration::from_millis(100)).await;
    settle().await;
    assert_eq!(up.calls(), 2, "exactly one refresh reached the upstream");
    assert_eq!(
        svc.clone().oneshot("hot".into()).await.unwrap().unwrap(),
        "hot@1"
    );
    assert_eq!(h.stats().hits, 1);
}

#[tokio::test(start_paused = true)]
async fn past_the_stale_window_is_a_miss() {
    let (up, svc) = upstream(Duration::ZERO);
    let layer = CacheConfig::new()
        .ttl(Duration::from_secs(10))
        .ttl_jitter(0.0)
        .stale_while_revalidate(Duration::from_secs(5))
        .builder(key)
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(svc);
    svc.clone().oneshot("k".into()).await.unwrap();
    tokio::time::advance(Duration::from_secs(15)).await;
    up.bump();
    assert_eq!(
        svc.clone().oneshot("k".into()).await.unwrap().unwrap(),
        "k@1"
    );
    assert_eq!((h.stats().stale_served, h.stats().misses), (0, 2));
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_the_stale_value_and_lets_the_next_request_retry() {
    let (up, svc) = upstream(Duration::ZERO);
    let layer = CacheConfig::new()
        .ttl(Duration::from_secs(10))
        .ttl_jitter(0.0)
        .stale_while_revalidate(Duration::from_secs(60))
        .builder(key)
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(svc);
    svc.clone().oneshot("k".into()).await.unwrap();
    tokio::time::advance(Duration::from_secs(11)).await;
    up.set_fail(true);
    assert_eq!(
        svc.clone().oneshot("k".into()).await.unwrap().unwrap(),
        "k@0"
    );
    settle().await;
    assert_eq!(h.stats().refresh_failures, 1);
    up.set_fail(false);
    up.bump();
    assert_eq!(
        svc.clone().oneshot("k".into()).await.unwrap().unwrap(),
        "k@0"
    );
    settle().await;
    assert_eq!(h.stats().refreshes, 2);
    assert_eq!(
        svc.clone().oneshot("k".into()).await.unwrap().unwrap(),
        "k@1"
    );
}

/// With XFetch, hits shortly before expiry refresh the entry in the
/// background, so a hot key never expires; without it, it does.
#[tokio::test(start_paused = true)]
async fn early_refresh_keeps_a_hot_key_from_expiring() {
    async fn run(early: Option<f64>) -> (u64, u64) {
        let (_, svc) = upstream(Duration::from_millis(500));
        let mut config = CacheConfig::new()
            .ttl(Duration::from_secs(10))
            .ttl_jitter(0.0)
            .seed(5);
        if let Some(beta) = early {
            config = config.early_refresh(beta);
        }
        let layer = config.builder(key).build().unwrap();
        let h = layer.handle();
        let svc = layer.layer(svc);
        // a hot key: read every 100 ms for 60 s
        for _ in 0..600 {
            svc.clone().oneshot("hot".into()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (h.stats().misses, h.stats().refreshes)
    }
    let (misses, refreshes) = run(None).await;
    assert!(
        misses >= 6,
        "expires every ~10 s without early refresh: {misses}"
    );
    assert_eq!(refreshes, 0);
    let (misses, refreshes) = run(Some(1.0)).await;
    assert_eq!(misses, 1, "only the first read misses");
    assert!(
        (5..=12).contains(&refreshes),
        "about one refresh per TTL: {refreshes}"
    );
}

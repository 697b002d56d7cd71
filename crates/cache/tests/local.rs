//! The local tier: hits, misses, lifetimes (paused time), single flight,
//! negative caching, per-entry lifetimes, weights and bypass.

mod common;

use std::time::Duration;

use common::{key, settle, upstream};
use rampart_cache::{CacheConfig, Lifetime, LoadFailed};
use tokio::task::JoinSet;
use tower::{Layer, ServiceExt};

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn a_second_request_is_a_hit() {
    let (up, svc) = upstream(MS);
    let layer = CacheConfig::new().builder(key).build().unwrap();
    let h = layer.handle();
    let svc = layer.layer(svc);
    assert_eq!(
        svc.clone().oneshot("a".into()).await.unwrap().unwrap(),
        "a@0"
    );
    up.bump();
    assert_eq!(
        svc.clone().oneshot("a".into()).await.unwrap().unwrap(),
        "a@0"
    );
    assert_eq!(up.calls(), 1);
    let s = h.stats();
    assert_eq!((s.misses, s.loads, s.hits), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_their_ttl() {
    let (up, svc) = upstream(Duration::ZERO);
    let layer = CacheConfig::new()
        .ttl(Duration::from_secs(10))
        .ttl_jitter(0.0)
        .builder(key)
        .build()
        .unwrap();
    let svc = layer.layer(svc);
    svc.clone().oneshot("a".into()).await.unwrap();
    tokio::time::advance(Duration::from_millis(9_999)).await;
    svc.clone().oneshot("a".into()).await.unwrap();
    assert_eq!(up.calls(), 1, "fresh before the TTL");
    tokio::time::advance(MS).await;
    up.bump();
    assert_eq!(
        svc.clone().oneshot("a".into()).await.unwrap().unwrap(),
        "a@1"
    );
    assert_eq!(up.calls(), 2, "expired at the TTL");
}

#[tokio::test(start_paused = true)]
async fn idle_entries_expire_after_tti() {
    let (up, svc) = upstream(Duration::ZERO);
    let layer = CacheConfig::new()
        .ttl(Duration::from_secs(100))
        .tti(Duration::from_secs(10))
        .builder(key)
        .build()
        .unwrap();
    let svc = layer.layer(svc);
    svc.clone().oneshot("a".into()).await.unwrap();
    for _ in 0..5 {
        // read every 9 s: stays alive well past one TTI
        tokio::time::advance(Duration::from_secs(9)).await;
        svc.clone().oneshot("a".into()).await.unwrap();
    }
    assert_eq!(up.calls(), 1);
    tokio::time::advance(Duration::from_secs(10)).await;
    svc.clone().oneshot("a".into()).await.unwrap();
    assert_eq!(up.calls(), 2, "idle for the TTI");
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_expiry_of_entries_loaded_together() {
    let (up, svc) = upstream(Duration::ZERO);
    let layer = CacheConfig::new()
        .ttl(Duration::from_secs(100))
        .ttl_jitter(0.2)
        .seed(11)
        .builder(key)
        .build()
        .unwrap();
    let svc = layer.layer(svc);
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    for k in &keys {
        svc.clone().oneshot(k.clone()).await.unwrap();
    }
    let mut expired_at = vec![0; keys.len()];
    let mut loads = 200;
    // step through 75 s .. 125 s one second at a time
    tokio::time::advance(Duration::from_secs(75)).await;
    for second in 75..=125 {
        for (i, k) in keys.iter().enumerate() {
            if expired_at[i] == 0 {
                svc.clone().oneshot(k.clone()).await.unwrap();
                if up.calls() > loads {
                    loads = up.calls();
                    expired_at[i] = second;
                }
            }
        }
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert!(
        expired_at.iter().all(|&s| (80..=120).contains(&s)),
        "{expired_at:?}"
    );
    let distinct: std::collections::HashSet<_> = expired_at.iter().collect();
    assert!(distinct.len() > 20, "expiries spread: {distinct:?}");
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_of_one_key_make_one_upstream_call() {
    let (up, svc) = upstream(Duration::from_millis(50));
    let layer = CacheConfig::new().builder(key).build().unwrap();
    let h = layer.handle();
    let svc = layer.layer(svc);
    let mut tasks = JoinSet::new();
    for _ in 0..1_000 {
        let svc = svc.clone();
        tasks.spawn(svc.oneshot("hot".into()));
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap().unwrap(), "hot@0");
    }
    assert_eq!(up.calls(), 1);
    let s = h.stats();
    assert_eq!((s.loads, s.misses + s.hits), (1, 1_000));
}

#[tokio::test(start_paused = true)]
async fn a_failed_load_reaches_every_waiter_and_is_not_cached() {
    let (up, svc) = upstream(Duration::from_millis(50));
    up.set_fail(true);
    let layer = CacheConfig::new().builder(key).build().unwrap();
    let h = layer.handle();
    let svc = layer.layer(svc);
    let mut tasks = JoinSet::new();
    for _ in 0..100 {
        let svc = svc.clone();
        tasks.spawn(svc.oneshot("k".into()));
    }
    while let Some(r) = tasks.join_next().await {
        let err = r.unwrap().unwrap_err();
        let failed = err.downcast_ref::<LoadFailed>().expect("a LoadFailed");
        assert_eq!(failed.inner().to_string(), "upstream down");
    }
    assert_eq!(up.calls(), 1, "one load for all waiters");
    assert_eq!(h.stats().load_failures, 1);
    up.set_fail(false);
    assert_eq!(svc.oneshot("k".into()).await.unwrap().unwrap(), "k@0");
    assert_eq!(up.calls(), 2, "the failure was not cached");
}

#[tokio::test(start_paused = true)]
async fn not_found_answers_are_cached_for_the_negative_ttl() {
    let (up, svc) = upstream(Duration::ZERO);
    let layer = CacheConfig::new()
        .ttl(Duration::from_secs(600))
        .negative_ttl(Duration::from_secs(5))
        .ttl_jitter(0.0)
        .builder(key)
        .negative(Option::is_none)
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(svc);
    for _ in 0..10 {
        assert_eq!(svc.clone().oneshot("missing-1".into()).await.unwrap(), None);
    }
    assert_eq!(up.calls(), 1);
    assert_eq!(h.stats().negative_hits, 9);
    assert_eq!(h.stats().hits, 0);
    tokio::time::advance(Duration::from_secs(5)).await;
    svc.clone().oneshot("missing-1".into()).await.unwrap();
    assert_eq!(up.calls(), 2, "negative entries live negative_ttl, not ttl");
}

#[tokio::test(start_paused = true)]
async fn a_value_sets_its_own_lifetime_or_refuses_caching() {
    let (up, svc) = upstream(Duration::ZERO);
    let layer = CacheConfig::new()
        .ttl(Duration::from_secs(600))
        .builder(key)
        .lifetime(|v: &Option<String>| match v.as_deref() {
            Some(s) if s.starts_with("short") => Lifetime::For(Duration::from_secs(2)),
            Some(s) if s.starts_with("private") => Lifetime::DoNotCache,
            _ => Lifetime::Default,
        })
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(svc);
    svc.clone().oneshot("short".into()).await.unwrap();
    svc.clone().oneshot("short".into()).await.unwrap();
    assert_eq!(up.calls(), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    svc.clone().oneshot("short".into()).await.unwrap();
    assert_eq!(up.calls(), 2, "lived its own 2 s");

    for _ in 0..3 {
        assert_eq!(
            svc.clone()
                .oneshot("private".into())
                .await
                .unwrap()
                .unwrap(),
            "private@0"
        );
    }
    assert_eq!(up.calls(), 5, "never cached");
    assert_eq!(h.stats().uncacheable, 3);
}

#[tokio::test(start_paused = true)]
async fn oversized_values_are_served_whole_but_not_cached() {
    let (up, svc) = upstream(Duration::ZERO);
    let layer = CacheConfig::new()
        .max_capacity(1_000)
        .max_entry_weight(10)
        .builder(key)
        .weigher(|_, v: &Option<String>| v.as_ref().map_or(1, |s| s.len() as u32))
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(svc);
    let long = "a-rather-long-key".to_string();
    for _ in 0..2 {
        assert_eq!(
            svc.clone().oneshot(long.clone()).await.unwrap().unwrap(),
            "a-rather-long-key@0"
        );
    }
    assert_eq!(up.calls(), 2);
    assert_eq!(h.stats().oversized, 2);
    svc.clone().oneshot("ab".into()).await.unwrap();
    svc.clone().oneshot("ab".into()).await.unwrap();
    assert_eq!(up.calls(), 3, "light values are cached");
    h.run_pending_tasks().await;
    assert_eq!(h.weighted_size(), 4, "\"ab@0\" weighs 4");
}

#[tokio::test(start_paused = true)]
async fn capacity_evictions_are_counted() {
    let (_, svc) = upstream(Duration::ZERO);
    let layer = CacheConfig::new()
        .max_capacity(10)
        .builder(key)
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(svc);
    for i in 0..100 {
        svc.clone().oneshot(format!("k{i}")).await.unwrap();
        h.run_pending_tasks().await;
    }
    assert!(h.entry_count() <= 10, "{}", h.entry_count());
    assert!(h.stats().evicted_size >= 90, "{:?}", h.stats());
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_key_bypass_the_cache() {
    let (up, svc) = upstream(Duration::ZERO);
    let layer = CacheConfig::new()
        .builder(|k: &String| (!k.starts_with("nocache")).then(|| k.clone()))
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(svc);
    for _ in 0..3 {
        svc.clone().oneshot("nocache".into()).await.unwrap();
    }
    assert_eq!(up.calls(), 3);
    let s = h.stats();
    assert_eq!((s.bypassed, s.misses, s.loads), (3, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn converted_values_need_no_clone_of_the_response() {
    /// A response that cannot be cloned.
    #[derive(Debug, PartialEq)]
    struct Page(String);
    let svc =
        tower::service_fn(
            |k: u32| async move { Ok::<_, std::io::Error>(Page(format!("page {k}"))) },
        );
    let layer = CacheConfig::new()
        .builder_with(
            |k: &u32| Some(*k),
            |p: &Page| (!p.0.ends_with('3')).then(|| p.0.clone()),
            |s: &String| Page(s.clone()),
        )
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(svc);
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), Page("page 1".into()));
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), Page("page 1".into()));
    assert_eq!(svc.clone().oneshot(3).await.unwrap(), Page("page 3".into()));
    let s = h.stats();
    assert_eq!((s.loads, s.hits, s.uncacheable), (2, 1, 1));
    settle().await;
}

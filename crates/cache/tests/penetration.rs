//! Penetration: requests for keys that do not exist are stopped by the
//! bloom filter of known keys (and repeats by the negative cache) before
//! they reach the upstream.

mod common;

use std::sync::Arc;

use common::{key, upstream};
use rampart_cache::CacheConfig;
use rampart_cache::bloom::{BloomConfig, KeySource, KnownKeys};
use rampart_cache::remote::BoxFuture;
use rampart_core::BoxError;
use tower::{Layer, ServiceExt};

/// The keys that exist: `user-0` .. `user-999`.
struct Users;

impl KeySource<String> for Users {
    fn keys(&self) -> BoxFuture<'_, Result<Vec<String>, BoxError>> {
        Box::pin(async { Ok((0..1_000).map(|i| format!("user-{i}")).collect()) })
    }
}

async fn known(fp: f64) -> KnownKeys<String> {
    let keys = KnownKeys::new(
        &BloomConfig::new()
            .expected_items(1_000)
            .false_positive_rate(fp),
        Some(Arc::new(Users)),
    );
    assert_eq!(keys.rebuild().await.unwrap(), 1_000);
    keys
}

#[tokio::test(start_paused = true)]
async fn absent_keys_do_not_reach_the_upstream() {
    const ABSENT: usize = 10_000;
    let fp = 0.01;
    let (up, svc) = upstream(std::time::Duration::ZERO);
    let layer = CacheConfig::new()
        .builder(key)
        .negative(Option::is_none)
        .known_keys(known(fp).await, |_| None)
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(svc);
    for i in 0..ABSENT {
        // Each absent key twice: the bloom filter stops nearly all of the
        // first requests, the negative cache the repeats of the rest.
        for _ in 0..2 {
            let answer = svc.clone().oneshot(format!("missing-{i}")).await.unwrap();
            assert_eq!(answer, None);
        }
    }
    let calls = up.calls();
    // The configured rate, plus as much again for the filter's own error.
    let bound = (2.0 * fp * ABSENT as f64) as usize;
    assert!(
        calls <= bound,
        "{calls} upstream calls for {ABSENT} absent keys (bound {bound})"
    );
    let s = h.stats();
    assert_eq!(
        s.bloom_rejected as usize + calls + s.negative_hits as usize,
        2 * ABSENT
    );
    assert_eq!(
        s.negative_hits as usize, calls,
        "each false positive loaded once"
    );

    // Existing keys load and are cached as usual.
    assert_eq!(
        svc.clone()
            .oneshot("user-7".into())
            .await
            .unwrap()
            .as_deref(),
        Some("user-7@0")
    );
    svc.oneshot("user-7".into()).await.unwrap();
    assert_eq!(up.calls(), calls + 1);
}

#[tokio::test(start_paused = true)]
async fn without_the_filter_every_absent_key_reaches_the_upstream() {
    let (up, svc) = upstream(std::time::Duration::ZERO);
    let svc = CacheConfig::new()
        .builder(key)
        .negative(Option::is_none)
        .build()
        .unwrap()
        .layer(svc);
    for i in 0..1_000 {
        svc.clone().oneshot(format!("missing-{i}")).await.unwrap();
    }
    assert_eq!(up.calls(), 1_000);
}

#[tokio::test(start_paused = true)]
async fn a_new_key_is_answered_absent_until_inserted_and_loads_insert_theirs() {
    let (up, svc) = upstream(std::time::Duration::ZERO);
    let keys = KnownKeys::new(&BloomConfig::new().expected_items(100), None);
    let layer = CacheConfig::new()
        .builder(key)
        .known_keys(keys.clone(), |_| None)
        .build()
        .unwrap();
    let svc = layer.layer(svc);
    assert_eq!(svc.clone().oneshot("order-1".into()).await.unwrap(), None);
    assert_eq!(up.calls(), 0, "unknown: absent without a call");
    keys.insert("order-1");
    assert_eq!(
        svc.clone()
            .oneshot("order-1".into())
            .await
            .unwrap()
            .as_deref(),
        Some("order-1@0")
    );
    assert_eq!(up.calls(), 1);
}

/// The users, after a second's wait.
struct SlowUsers;

impl KeySource<String> for SlowUsers {
    fn keys(&self) -> BoxFuture<'_, Result<Vec<String>, BoxError>> {
        Box::pin(async {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            Users.keys().await
        })
    }
}

#[tokio::test(start_paused = true)]
async fn positive_loads_join_the_filter_and_not_found_answers_do_not() {
    let (_up, svc) = upstream(std::time::Duration::ZERO);
    let keys = KnownKeys::new(
        &BloomConfig::new().expected_items(1_000),
        Some(Arc::new(SlowUsers)),
    );
    let layer = CacheConfig::new()
        .builder(key)
        .negative(Option::is_none)
        .known_keys(keys.clone(), |_| None)
        .build()
        .unwrap();
    let svc = layer.layer(svc);
    // The first generation is being built (the filter lets every key
    // through meanwhile): keys loaded now are kept in it.
    let rebuild = tokio::spawn({
        let keys = keys.clone();
        async move { keys.rebuild().await }
    });
    tokio::task::yield_now().await;
    for i in 0..20 {
        assert!(
            svc.clone()
                .oneshot(format!("new-{i}"))
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            svc.clone()
                .oneshot(format!("missing-{i}"))
                .await
                .unwrap()
                .is_none()
        );
    }
    tokio::time::advance(std::time::Duration::from_secs(1)).await;
    assert_eq!(rebuild.await.unwrap().unwrap(), 1_000);
    for i in 0..20 {
        assert!(
            keys.might_exist(&format!("new-{i}")),
            "a loaded key joins the filter"
        );
    }
    // Not-found answers are not inserted: only the filter's own false
    // positives (about 1 %) may answer yes.
    let let_through = (0..20)
        .filter(|i| keys.might_exist(&format!("missing-{i}")))
        .count();
    assert!(let_through <= 3, "{let_through} of 20 not-found keys known");
}

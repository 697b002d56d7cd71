//! The config store contract on the memory backend: its exact revisions,
//! and the shared suite (tests/common/config_suite.rs).

use std::sync::Arc;

use rampart_discovery::config::{ConfigStore, ConfigStoreError, MemoryConfigStore, StoreOptions};

fn store() -> Arc<dyn ConfigStore> {
    Arc::new(MemoryConfigStore::new())
}

#[tokio::test]
async fn put_get_and_store_wide_revisions() {
    let s = store();
    assert_eq!(s.get("a").await.unwrap(), None);
    let v1 = s.put("a", "one".into()).await.unwrap();
    let v2 = s.put("b", "two".into()).await.unwrap();
    let v3 = s.put("a", "three".into()).await.unwrap();
    assert_eq!(
        (v1, v2, v3),
        (1, 2, 3),
        "one revision counter for the store"
    );
    let a = s.get("a").await.unwrap().unwrap();
    assert_eq!((a.as_str(), a.version), (Some("three"), 3));
    assert_eq!(s.get("b").await.unwrap().unwrap().version, 2);
}

#[tokio::test]
async fn empty_key_is_refused() {
    let err = store().put("", "x".into()).await.unwrap_err();
    assert!(
        matches!(err, ConfigStoreError::InvalidKey { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn history_is_oldest_first_and_bounded() {
    let s: Arc<dyn ConfigStore> = Arc::new(
        MemoryConfigStore::with_options(StoreOptions::default().history_depth(3)).unwrap(),
    );
    let mut versions = Vec::new();
    for i in 0..5 {
        s.put("noise", "n".into()).await.unwrap();
        versions.push(s.put("k", format!("v{i}").into()).await.unwrap());
    }
    let history = s.history("k").await.unwrap();
    let seen: Vec<_> = history
        .iter()
        .map(|v| (v.version, v.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (versions[2], "v2".to_owned()),
            (versions[3], "v3".to_owned()),
            (versions[4], "v4".to_owned()),
        ]
    );
    // A version that fell out of the history cannot be rolled back to.
    let err = s.rollback("k", versions[0]).await.unwrap_err();
    assert!(
        matches!(err, ConfigStoreError::VersionNotFound { version, .. } if version == versions[0]),
        "{err:?}"
    );
}

#[test]
fn history_depth_zero_is_refused() {
    let err =
        MemoryConfigStore::with_options(StoreOptions::default().history_depth(0)).unwrap_err();
    match err {
        ConfigStoreError::Options(e) => assert_eq!(e.field(), "history_depth"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn options_load_from_toml_and_refuse_unknown_fields() {
    let o: StoreOptions = toml::from_str("history_depth = 4").unwrap();
    assert_eq!(o.history_depth, 4);
    assert!(toml::from_str::<StoreOptions>("history = 4").is_err());
}

#[tokio::test]
async fn dropped_watchers_are_forgotten_and_stream_ends_with_the_store() {
    let s = store();
    let w1 = s.watch("").await.unwrap();
    drop(w1);
    let mut w2 = s.watch("").await.unwrap();
    s.put("k", "v".into()).await.unwrap();
    assert!(w2.next().await.is_some());
    drop(s);
    assert!(
        w2.next().await.is_none(),
        "the stream ends when the store is dropped"
    );
}

// === the shared contract (tests/common/config_suite.rs), on memory ===

mod common;

mod conformance {
    use super::common::config_suite as suite;
    use super::*;

    #[tokio::test]
    async fn compare_and_put() {
        suite::compare_and_put_conflict_returns_current_version(store()).await;
    }

    #[tokio::test]
    async fn delete() {
        suite::delete_then_create_again(store()).await;
    }

    #[tokio::test]
    async fn history() {
        let s = MemoryConfigStore::with_options(StoreOptions::default().history_depth(3)).unwrap();
        suite::history_is_oldest_first_and_bounded(Arc::new(s)).await;
    }

    #[tokio::test]
    async fn rollback() {
        suite::rollback_restores_content_as_a_new_version(store()).await;
    }

    #[tokio::test]
    async fn watch_prefix() {
        suite::watch_by_prefix_sees_puts_and_deletes_after_the_call(store()).await;
    }

    #[tokio::test]
    async fn watch_pattern() {
        suite::watch_pattern_filters_and_invalid_regex_is_a_typed_error(store()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers() {
        suite::watch_delivers_every_change_once_in_order_under_concurrent_writers(store(), 8, 200)
            .await;
    }
}

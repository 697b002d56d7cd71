//! The config store contract, on the memory backend.

use std::sync::Arc;

use rampart_discovery::config::{
    ChangeKind, ConfigStore, ConfigStoreError, MemoryConfigStore, StoreOptions,
};

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
async fn compare_and_put_conflict_returns_current_version() {
    let s = store();
    // 0 = must not exist.
    let v1 = s.compare_and_put("k", "a".into(), 0).await.unwrap();
    match s.compare_and_put("k", "b".into(), 0).await {
        Err(ConfigStoreError::Conflict(c)) => {
            assert_eq!((c.key.as_str(), c.expected, c.current), ("k", 0, Some(v1)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let v2 = s.compare_and_put("k", "b".into(), v1).await.unwrap();
    match s.compare_and_put("k", "c".into(), v1).await {
        Err(ConfigStoreError::Conflict(c)) => assert_eq!(c.current, Some(v2)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(s.get("k").await.unwrap().unwrap().as_str(), Some("b"));
    // A missing key conflicts with any non-zero expectation, reporting None.
    match s.compare_and_put("other", "x".into(), 7).await {
        Err(ConfigStoreError::Conflict(c)) => assert_eq!(c.current, None),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn delete_then_create_again() {
    let s = store();
    assert_eq!(s.delete("k").await.unwrap(), None, "nothing to delete");
    let v1 = s.put("k", "a".into()).await.unwrap();
    let d = s.delete("k").await.unwrap().unwrap();
    assert!(d > v1);
    assert_eq!(s.get("k").await.unwrap(), None);
    // Deleted = does not exist, for compare-and-put.
    let v3 = s.compare_and_put("k", "b".into(), 0).await.unwrap();
    assert!(v3 > d);
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
async fn rollback_restores_content_as_a_new_version() {
    let s = store();
    let v1 = s.put("k", "good".into()).await.unwrap();
    let v2 = s.put("k", "bad".into()).await.unwrap();
    let mut w = s.watch("k").await.unwrap();
    let v3 = s.rollback("k", v1).await.unwrap();
    assert!(v3 > v2, "a rollback is a new version");
    let now = s.get("k").await.unwrap().unwrap();
    assert_eq!((now.as_str(), now.version), (Some("good"), v3));
    let history: Vec<_> = s
        .history("k")
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(history, vec![v1, v2, v3]);
    let change = w.next().await.unwrap();
    assert_eq!((change.kind, change.version), (ChangeKind::Put, v3));
    assert_eq!(change.value.as_deref(), Some(&b"good"[..]));
    // Rolling back a deleted key brings it back.
    s.delete("k").await.unwrap();
    s.rollback("k", v2).await.unwrap();
    assert_eq!(s.get("k").await.unwrap().unwrap().as_str(), Some("bad"));
}

#[tokio::test]
async fn watch_by_prefix_sees_puts_and_deletes_after_the_call() {
    let s = store();
    s.put("app/a", "before".into()).await.unwrap();
    let mut w = s.watch("app/").await.unwrap();
    let v1 = s.put("app/a", "1".into()).await.unwrap();
    s.put("other/a", "x".into()).await.unwrap();
    let v2 = s.delete("app/a").await.unwrap().unwrap();
    let c1 = w.next().await.unwrap();
    assert_eq!(
        (c1.key.as_str(), c1.version, c1.kind),
        ("app/a", v1, ChangeKind::Put)
    );
    let c2 = w.next().await.unwrap();
    assert_eq!(
        (c2.version, c2.kind, c2.value),
        (v2, ChangeKind::Delete, None)
    );
    assert!(
        w.try_next().is_none(),
        "other/ is not under app/, and nothing repeats"
    );
}

#[tokio::test]
async fn watch_pattern_filters_and_invalid_regex_is_a_typed_error() {
    let s = store();
    let mut w = s.watch_pattern(r"^svc/[a-z]+/limits$").await.unwrap();
    s.put("svc/api/limits", "1".into()).await.unwrap();
    s.put("svc/api/limits/extra", "2".into()).await.unwrap();
    s.put("svc/API/limits", "3".into()).await.unwrap();
    s.put("svc/web/limits", "4".into()).await.unwrap();
    let keys: Vec<_> = [w.next().await.unwrap(), w.next().await.unwrap()]
        .into_iter()
        .map(|c| c.key)
        .collect();
    assert_eq!(keys, ["svc/api/limits", "svc/web/limits"]);
    assert!(w.try_next().is_none());

    let err = s.watch_pattern("svc/(unclosed").await.unwrap_err();
    match &err {
        ConfigStoreError::InvalidPattern { pattern, .. } => assert_eq!(pattern, "svc/(unclosed"),
        other => panic!("{other:?}"),
    }
    assert!(
        std::error::Error::source(&err).is_some(),
        "the regex error is the source"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_every_change_exactly_once_in_order_under_concurrent_writers() {
    const WRITERS: usize = 8;
    const WRITES: usize = 200;
    let s = store();
    let mut watchers = Vec::new();
    for _ in 0..3 {
        watchers.push(s.watch("").await.unwrap());
    }
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for i in 0..WRITES {
                let key = format!("w{w}/k{}", i % 5);
                let v = if i % 7 == 6 {
                    s.delete(&key).await.unwrap()
                } else {
                    Some(s.put(&key, format!("{i}").into()).await.unwrap())
                };
                versions.extend(v);
            }
            versions
        }));
    }
    let mut written = Vec::new();
    for t in tasks {
        written.extend(t.await.unwrap());
    }
    written.sort_unstable();
    for mut w in watchers {
        let mut seen = Vec::new();
        while let Some(c) = w.try_next() {
            seen.push(c.version);
        }
        assert_eq!(seen, written, "every change once, in version order");
    }
    // Versions are 1..=N with no gaps: the store revision counted each change.
    assert_eq!(written, (1..=written.len() as u64).collect::<Vec<_>>());
}

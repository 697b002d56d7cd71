//! The config store contract, generic over `&dyn ConfigStore`: run on the
//! memory, file and etcd stores. Versions are only compared with each
//! other (etcd's revisions are shared with the whole cluster).

use std::sync::Arc;

use rampart_discovery::config::{ChangeKind, ConfigStore, ConfigStoreError};

/// Compare-and-put: 0 means "must not exist"; a conflict carries the
/// current version (or `None` for a missing key); two writers racing from
/// one version: exactly one wins.
pub async fn compare_and_put_conflict_returns_current_version(s: Arc<dyn ConfigStore>) {
    let v1 = s.compare_and_put("k", "a".into(), 0).await.unwrap();
    match s.compare_and_put("k", "b".into(), 0).await {
        Err(ConfigStoreError::Conflict(c)) => {
            assert_eq!((c.key.as_str(), c.expected, c.current), ("k", 0, Some(v1)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let (x, y) = tokio::join!(
        s.compare_and_put("k", "x".into(), v1),
        s.compare_and_put("k", "y".into(), v1)
    );
    let (won, lost, value) = match (x, y) {
        (Ok(v), Err(e)) => (v, e, "x"),
        (Err(e), Ok(v)) => (v, e, "y"),
        other => panic!("exactly one writer must win: {other:?}"),
    };
    assert!(won > v1);
    match lost {
        ConfigStoreError::Conflict(c) => assert_eq!((c.expected, c.current), (v1, Some(won))),
        other => panic!("{other:?}"),
    }
    let now = s.get("k").await.unwrap().unwrap();
    assert_eq!((now.as_str(), now.version), (Some(value), won));
    match s.compare_and_put("other", "x".into(), 7).await {
        Err(ConfigStoreError::Conflict(c)) => assert_eq!(c.current, None),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let err = s.put("", "x".into()).await.unwrap_err();
    assert!(
        matches!(err, ConfigStoreError::InvalidKey { .. }),
        "{err:?}"
    );
}

/// A deleted key does not exist (also for compare-and-put) and can be
/// created again; deleting a missing key changes nothing.
pub async fn delete_then_create_again(s: Arc<dyn ConfigStore>) {
    assert_eq!(s.delete("k").await.unwrap(), None, "nothing to delete");
    let v1 = s.put("k", "a".into()).await.unwrap();
    let d = s.delete("k").await.unwrap().unwrap();
    assert!(d > v1);
    assert_eq!(s.get("k").await.unwrap(), None);
    let v3 = s.compare_and_put("k", "b".into(), 0).await.unwrap();
    assert!(v3 > d);
}

/// `s` must keep a history of 3: the newest three values, oldest first.
pub async fn history_is_oldest_first_and_bounded(s: Arc<dyn ConfigStore>) {
    let mut versions = Vec::new();
    for i in 0..5 {
        s.put("noise", "n".into()).await.unwrap();
        versions.push(s.put("k", format!("v{i}").into()).await.unwrap());
    }
    let seen: Vec<_> = s
        .history("k")
        .await
        .unwrap()
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
    let err = s.rollback("k", versions[4] + 1_000_000).await.unwrap_err();
    assert!(
        matches!(err, ConfigStoreError::VersionNotFound { .. }),
        "{err:?}"
    );
}

/// Rollback writes the old content as a new version, watchers see it, and
/// a deleted key can be rolled back.
pub async fn rollback_restores_content_as_a_new_version(s: Arc<dyn ConfigStore>) {
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
    s.delete("k").await.unwrap();
    s.rollback("k", v2).await.unwrap();
    assert_eq!(s.get("k").await.unwrap().unwrap().as_str(), Some("bad"));
}

/// A prefix watch sees the puts and deletes after the call under its
/// prefix, each once.
pub async fn watch_by_prefix_sees_puts_and_deletes_after_the_call(s: Arc<dyn ConfigStore>) {
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
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        w.try_next().is_none(),
        "other/ is not under app/, and nothing repeats"
    );
}

/// A regex watch filters keys; an invalid regex is a typed error.
pub async fn watch_pattern_filters_and_invalid_regex_is_a_typed_error(s: Arc<dyn ConfigStore>) {
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
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(w.try_next().is_none());
    let err = s.watch_pattern("svc/(unclosed").await.unwrap_err();
    match &err {
        ConfigStoreError::InvalidPattern { pattern, .. } => assert_eq!(pattern, "svc/(unclosed"),
        other => panic!("{other:?}"),
    }
    assert!(std::error::Error::source(&err).is_some());
}

/// Concurrent writers: every watcher sees every change once, in version
/// order.
pub async fn watch_delivers_every_change_once_in_order_under_concurrent_writers(
    s: Arc<dyn ConfigStore>,
    writers: usize,
    writes: usize,
) {
    let mut watchers = Vec::new();
    for _ in 0..3 {
        watchers.push(s.watch("").await.unwrap());
    }
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut versions = Vec::new();
                for i in 0..writes {
                    let key = format!("w{w}/k{}", i % 5);
                    let v = if i % 7 == 6 {
                        s.delete(&key).await.unwrap()
                    } else {
                        Some(s.put(&key, format!("{i}").into()).await.unwrap())
                    };
                    versions.extend(v);
                }
                versions
            })
        })
        .collect();
    let mut written = Vec::new();
    for t in tasks {
        written.extend(t.await.unwrap());
    }
    written.sort_unstable();
    for mut w in watchers {
        let mut seen = Vec::new();
        while seen.len() < written.len() {
            let c = tokio::time::timeout(std::time::Duration::from_secs(10), w.next())
                .await
                .expect("every change arrives")
                .unwrap();
            seen.push(c.version);
        }
        assert_eq!(seen, written, "every change once, in version order");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(w.try_next().is_none(), "nothing repeats");
    }
}

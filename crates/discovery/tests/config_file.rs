//! The file-backed config store: persistence, atomic writes, bad files.

mod common;

use std::sync::Arc;

use common::TempDir;
use rampart_discovery::config::{
    ChangeKind, ConfigStore, ConfigStoreError, FileConfigStore, StoreOptions,
};

async fn open(path: &std::path::Path) -> FileConfigStore {
    FileConfigStore::open(path, StoreOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn survives_reopen_with_history_revision_and_deletions() {
    let dir = TempDir::new("config-reopen");
    let (v1, v2, v3);
    {
        let s = open(&dir.file()).await;
        v1 = s.put("app/a", "one".into()).await.unwrap();
        v2 = s.put("app/a", "two".into()).await.unwrap();
        s.put("app/gone", "x".into()).await.unwrap();
        v3 = s.delete("app/gone").await.unwrap().unwrap();
        s.put("bin", vec![0xff, 0x00, 0xfe].into()).await.unwrap();
    }
    let s: Arc<dyn ConfigStore> = Arc::new(open(&dir.file()).await);
    let a = s.get("app/a").await.unwrap().unwrap();
    assert_eq!((a.as_str(), a.version), (Some("two"), v2));
    let history: Vec<_> = s
        .history("app/a")
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(history, vec![v1, v2]);
    assert_eq!(
        s.get("app/gone").await.unwrap(),
        None,
        "a deletion persists"
    );
    assert_eq!(
        &s.get("bin").await.unwrap().unwrap().value[..],
        &[0xff, 0x00, 0xfe]
    );
    // The revision continues where it stopped; rollback works across restarts.
    let v = s.rollback("app/a", v1).await.unwrap();
    assert!(v > v3 + 1);
    assert_eq!(s.get("app/a").await.unwrap().unwrap().as_str(), Some("one"));
    // Rolling back the deleted key from its persisted history.
    let gone = s.history("app/gone").await.unwrap();
    s.rollback("app/gone", gone[0].version).await.unwrap();
    assert_eq!(
        s.get("app/gone").await.unwrap().unwrap().as_str(),
        Some("x")
    );
}

#[tokio::test]
async fn conflicts_and_watches_work_on_the_file_store() {
    let dir = TempDir::new("config-cas");
    let s = open(&dir.file()).await;
    let mut w = s.watch_pattern("^k$").await.unwrap();
    let v1 = s.compare_and_put("k", "a".into(), 0).await.unwrap();
    match s.compare_and_put("k", "b".into(), 0).await {
        Err(ConfigStoreError::Conflict(c)) => assert_eq!(c.current, Some(v1)),
        other => panic!("{other:?}"),
    }
    s.put("other", "x".into()).await.unwrap();
    let d = s.delete("k").await.unwrap().unwrap();
    let c1 = w.next().await.unwrap();
    let c2 = w.next().await.unwrap();
    assert_eq!((c1.version, c1.kind), (v1, ChangeKind::Put));
    assert_eq!((c2.version, c2.kind), (d, ChangeKind::Delete));
    assert!(w.try_next().is_none());
}

#[tokio::test]
async fn history_is_trimmed_to_the_depth_on_reopen() {
    let dir = TempDir::new("config-trim");
    {
        let s = open(&dir.file()).await;
        for i in 0..5 {
            s.put("k", format!("{i}").into()).await.unwrap();
        }
    }
    let s = FileConfigStore::open(dir.file(), StoreOptions::default().history_depth(2))
        .await
        .unwrap();
    let history: Vec<_> = s
        .history("k")
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(history, vec![4, 5]);
}

#[tokio::test]
async fn a_failed_write_changes_nothing_on_disk_or_in_memory() {
    let dir = TempDir::new("config-fail");
    let s = open(&dir.file()).await;
    let v1 = s.put("k", "good".into()).await.unwrap();
    let before = std::fs::read(dir.file()).unwrap();
    // Make the temporary file impossible to create: a directory in its place.
    let tmp = dir.0.join(".config.json.tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut w = s.watch("").await.unwrap();
    let err = s.put("k", "new".into()).await.unwrap_err();
    assert!(matches!(err, ConfigStoreError::Io { .. }), "{err:?}");
    assert_eq!(
        std::fs::read(dir.file()).unwrap(),
        before,
        "the store file is untouched"
    );
    let now = s.get("k").await.unwrap().unwrap();
    assert_eq!(
        (now.as_str(), now.version),
        (Some("good"), v1),
        "memory is untouched"
    );
    assert!(
        w.try_next().is_none(),
        "watchers hear nothing of a failed write"
    );
    // Once writing works again, the revision continues without a gap.
    std::fs::remove_dir(&tmp).unwrap();
    assert_eq!(s.put("k", "new".into()).await.unwrap(), v1 + 1);
    assert!(!tmp.exists(), "the temporary file was renamed into place");
    drop(s);
    assert_eq!(
        open(&dir.file())
            .await
            .get("k")
            .await
            .unwrap()
            .unwrap()
            .as_str(),
        Some("new")
    );
}

async fn malformed(contents: &[u8]) -> String {
    let dir = TempDir::new("config-bad");
    std::fs::write(dir.file(), contents).unwrap();
    let err = FileConfigStore::open(dir.file(), StoreOptions::default())
        .await
        .unwrap_err();
    // Never silently emptied.
    assert_eq!(std::fs::read(dir.file()).unwrap(), contents);
    match err {
        ConfigStoreError::Malformed { path, reason } => {
            assert_eq!(path, dir.file());
            reason
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_malformed_file_is_a_typed_error_naming_the_cause() {
    assert!(malformed(b"").await.contains("empty"));
    assert!(malformed(b"{not json").await.contains("invalid JSON"));
    assert!(
        malformed(br#"{"format": 9, "revision": 0, "keys": {}}"#)
            .await
            .contains("format 9")
    );
    let reason = malformed(
        br#"{"format": 1, "revision": 2, "keys": {"k": {"deleted": false, "history": [{"version": 5, "text": "x"}]}}}"#,
    )
    .await;
    assert!(
        reason.contains("\"k\"") && reason.contains("version 5"),
        "{reason}"
    );
    let reason = malformed(
        br#"{"format": 1, "revision": 2, "keys": {"k": {"deleted": false, "history": []}}}"#,
    )
    .await;
    assert!(reason.contains("empty history"), "{reason}");
    let reason = malformed(
        br#"{"format": 1, "revision": 2, "keys": {"k": {"deleted": false, "history": [{"version": 1}]}}}"#,
    )
    .await;
    assert!(reason.contains("exactly one"), "{reason}");
}

#[tokio::test]
async fn a_missing_directory_is_an_io_error_on_first_write() {
    let dir = TempDir::new("config-nodir");
    let path = dir.0.join("missing").join("config.json");
    let s = open(&path).await;
    let err = s.put("k", "v".into()).await.unwrap_err();
    assert!(matches!(err, ConfigStoreError::Io { .. }), "{err:?}");
    assert_eq!(s.get("k").await.unwrap(), None);
}

// === the shared contract (tests/common/config_suite.rs), on a file ===

mod conformance {
    use super::common::config_suite as suite;
    use super::*;

    async fn file_store(dir: &TempDir, depth: usize) -> Arc<dyn ConfigStore> {
        let options = StoreOptions::default().history_depth(depth);
        Arc::new(FileConfigStore::open(&dir.file(), options).await.unwrap())
    }

    #[tokio::test]
    async fn compare_and_put() {
        let dir = TempDir::new("suite-cas");
        suite::compare_and_put_conflict_returns_current_version(file_store(&dir, 16).await).await;
    }

    #[tokio::test]
    async fn delete() {
        let dir = TempDir::new("suite-delete");
        suite::delete_then_create_again(file_store(&dir, 16).await).await;
    }

    #[tokio::test]
    async fn history() {
        let dir = TempDir::new("suite-history");
        suite::history_is_oldest_first_and_bounded(file_store(&dir, 3).await).await;
    }

    #[tokio::test]
    async fn rollback() {
        let dir = TempDir::new("suite-rollback");
        suite::rollback_restores_content_as_a_new_version(file_store(&dir, 16).await).await;
    }

    #[tokio::test]
    async fn watch_prefix() {
        let dir = TempDir::new("suite-watch");
        suite::watch_by_prefix_sees_puts_and_deletes_after_the_call(file_store(&dir, 16).await)
            .await;
    }

    #[tokio::test]
    async fn watch_pattern() {
        let dir = TempDir::new("suite-pattern");
        suite::watch_pattern_filters_and_invalid_regex_is_a_typed_error(file_store(&dir, 16).await)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers() {
        let dir = TempDir::new("suite-concurrent");
        suite::watch_delivers_every_change_once_in_order_under_concurrent_writers(
            file_store(&dir, 16).await,
            4,
            25,
        )
        .await;
    }
}

//! The etcd config store against a real etcd: the shared conformance
//! suite, gray release on it, and its watch across an etcd restart.
#![cfg(feature = "etcd")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::config_suite as suite;
use common::etcd::{OwnEtcd, endpoints, unique_prefix};
use rampart_discovery::config::{
    ChangeKind, ConfigStore, ConfigStoreError, EtcdConfigStore, EtcdConfigStoreConfig,
    InstanceInfo, Selector, get_for, promote_gray, put_gray,
};

async fn store(test: &str) -> EtcdConfigStore {
    EtcdConfigStoreConfig::new()
        .endpoints(endpoints())
        .prefix(unique_prefix(test))
        .name(test)
        .build()
        .await
        .unwrap()
}

async fn shared(test: &str) -> Arc<dyn ConfigStore> {
    Arc::new(store(test).await)
}

#[tokio::test]
async fn compare_and_put_conflict_returns_current_version() {
    suite::compare_and_put_conflict_returns_current_version(shared("cas").await).await;
}

#[tokio::test]
async fn delete_then_create_again() {
    suite::delete_then_create_again(shared("delete").await).await;
}

#[tokio::test]
async fn history_is_oldest_first_and_bounded() {
    let s = EtcdConfigStoreConfig::new()
        .endpoints(endpoints())
        .prefix(unique_prefix("history"))
        .history_depth(3)
        .build()
        .await
        .unwrap();
    suite::history_is_oldest_first_and_bounded(Arc::new(s)).await;
}

#[tokio::test]
async fn rollback_restores_content_as_a_new_version() {
    suite::rollback_restores_content_as_a_new_version(shared("rollback").await).await;
}

#[tokio::test]
async fn watch_by_prefix_sees_puts_and_deletes_after_the_call() {
    suite::watch_by_prefix_sees_puts_and_deletes_after_the_call(shared("watch").await).await;
}

#[tokio::test]
async fn watch_pattern_filters_and_invalid_regex_is_a_typed_error() {
    suite::watch_pattern_filters_and_invalid_regex_is_a_typed_error(shared("pattern").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_every_change_once_in_order_under_concurrent_writers() {
    suite::watch_delivers_every_change_once_in_order_under_concurrent_writers(
        shared("concurrent").await,
        4,
        50,
    )
    .await;
}

#[tokio::test]
async fn versions_are_etcd_mod_revisions_under_the_prefix() {
    let s = store("layout").await;
    let v = s.put("app/limits", "7".into()).await.unwrap();
    let mut client = s.client().clone();
    let got = client.get(s.etcd_key("app/limits"), None).await.unwrap();
    assert_eq!(got.kvs()[0].mod_revision() as u64, v);
    assert_eq!(got.kvs()[0].value(), b"7");
    assert!(s.etcd_key("app/limits").ends_with("/app/limits"));
    let err = EtcdConfigStoreConfig::new()
        .history_depth(0)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConfigStoreError::Options(e) if e.field() == "history_depth"),
        "{err:?}"
    );
}

#[tokio::test]
async fn gray_release_works_on_etcd() {
    let s = shared("gray").await;
    s.put("svc/limits", "main".into()).await.unwrap();
    let canary = InstanceInfo::new("api-1").label("canary", "true");
    let other = InstanceInfo::new("api-2");
    put_gray(
        s.as_ref(),
        "svc/limits",
        "gray".into(),
        Selector::default().label("canary", "true"),
    )
    .await
    .unwrap();
    let seen = get_for(s.as_ref(), "svc/limits", &canary)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.as_str(), Some("gray"));
    let seen = get_for(s.as_ref(), "svc/limits", &other)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.as_str(), Some("main"));
    promote_gray(s.as_ref(), "svc/limits").await.unwrap();
    let seen = get_for(s.as_ref(), "svc/limits", &other)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.as_str(), Some("gray"));
}

/// etcd is SIGKILLed under a watch and restarted on the same data: calls
/// fail with a backend error while it is down; the watch resumes and
/// delivers every change exactly once, in order.
#[tokio::test]
async fn watch_resumes_across_an_etcd_restart() {
    let mut etcd = OwnEtcd::start("config-restart").await;
    let s = EtcdConfigStoreConfig::new()
        .endpoints([etcd.endpoint()])
        .request_timeout(Duration::from_millis(500))
        .backoff_min(Duration::from_millis(50))
        .backoff_max(Duration::from_millis(400))
        .build()
        .await
        .unwrap();
    let mut w = s.watch_pattern("^app/").await.unwrap();
    let mut written = vec![s.put("app/a", "1".into()).await.unwrap()];
    written.push(s.put("app/b", "1".into()).await.unwrap());
    etcd.kill();
    let err = s.put("app/a", "lost".into()).await.unwrap_err();
    assert!(matches!(err, ConfigStoreError::Backend(_)), "{err:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    etcd.restart().await;
    written.push(s.put("app/a", "2".into()).await.unwrap());
    written.push(s.delete("app/b").await.unwrap().unwrap());
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        let c = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("every change arrives")
            .unwrap();
        seen.push((c.version, c.kind));
    }
    let kinds = [
        ChangeKind::Put,
        ChangeKind::Put,
        ChangeKind::Put,
        ChangeKind::Delete,
    ];
    assert_eq!(seen, written.into_iter().zip(kinds).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(w.try_next().is_none(), "nothing repeats");
}

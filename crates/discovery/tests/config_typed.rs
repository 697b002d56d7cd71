//! Typed config: decode, reject bad pushes, keep the last good value.

use std::sync::Arc;

use rampart_discovery::config::{
    ConfigStore, ConfigStoreError, Format, MemoryConfigStore, TypedErrorKind, watch_typed,
};
use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
struct Limits {
    max_conns: u32,
}

fn store() -> Arc<dyn ConfigStore> {
    Arc::new(MemoryConfigStore::new())
}

#[tokio::test]
async fn typed_watch_keeps_the_last_good_value_on_a_bad_push() {
    let s = store();
    s.put("limits", r#"{"max_conns": 1}"#.into()).await.unwrap();
    let mut t = watch_typed::<Limits>(s.clone(), "limits", Format::Json)
        .await
        .unwrap();
    assert_eq!(*t.current(), Limits { max_conns: 1 });

    let bad = s
        .put("limits", r#"{"max_conns": "many"}"#.into())
        .await
        .unwrap();
    let e = t.errors.recv().await.unwrap();
    assert_eq!((e.key.as_str(), e.version), ("limits", bad));
    assert!(matches!(e.kind, TypedErrorKind::Decode(_)), "{e:?}");
    assert_eq!(
        *t.current(),
        Limits { max_conns: 1 },
        "the last good value stays"
    );
    assert!(!t.values.has_changed().unwrap(), "watchers were not woken");

    s.put("limits", r#"{"max_conns": 2}"#.into()).await.unwrap();
    t.values.changed().await.unwrap();
    assert_eq!(*t.current(), Limits { max_conns: 2 });

    let deleted = s.delete("limits").await.unwrap().unwrap();
    let e = t.errors.recv().await.unwrap();
    assert_eq!((e.version, e.kind), (deleted, TypedErrorKind::Deleted));
    assert_eq!(*t.current(), Limits { max_conns: 2 });
}

#[tokio::test]
async fn other_keys_do_not_reach_a_typed_watch() {
    let s = store();
    s.put("svc.limits", r#"{"max_conns": 1}"#.into())
        .await
        .unwrap();
    let mut t = watch_typed::<Limits>(s.clone(), "svc.limits", Format::Json)
        .await
        .unwrap();
    // A longer key with the same prefix, and a key that the name would
    // match if its "." were not escaped.
    s.put("svc.limits2", "garbage".into()).await.unwrap();
    s.put("svcXlimits", "garbage".into()).await.unwrap();
    s.put("svc.limits", r#"{"max_conns": 3}"#.into())
        .await
        .unwrap();
    t.values.changed().await.unwrap();
    assert_eq!(t.current().max_conns, 3);
    assert!(t.errors.try_recv().is_err(), "no error from other keys");
}

#[tokio::test]
async fn toml_format() {
    let s = store();
    s.put("limits", "max_conns = 7\n".into()).await.unwrap();
    let mut t = watch_typed::<Limits>(s.clone(), "limits", Format::Toml)
        .await
        .unwrap();
    assert_eq!(t.current().max_conns, 7);
    s.put("limits", "max_conns = [".into()).await.unwrap();
    assert!(matches!(
        t.errors.recv().await.unwrap().kind,
        TypedErrorKind::Decode(_)
    ));
    assert_eq!(t.current().max_conns, 7);
}

#[tokio::test]
async fn first_value_must_exist_and_decode() {
    let s = store();
    let err = watch_typed::<Limits>(s.clone(), "limits", Format::Json)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConfigStoreError::NotFound { ref key } if key == "limits"),
        "{err:?}"
    );
    let v = s.put("limits", "nope".into()).await.unwrap();
    let err = watch_typed::<Limits>(s.clone(), "limits", Format::Json)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConfigStoreError::Decode { ref key, version, .. } if key == "limits" && version == v),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_task_ends_when_the_receivers_are_dropped() {
    let s = store();
    s.put("limits", r#"{"max_conns": 1}"#.into()).await.unwrap();
    let t = watch_typed::<Limits>(s.clone(), "limits", Format::Json)
        .await
        .unwrap();
    let mut errors = t.errors;
    drop(t.values);
    // The task sees its receivers gone and exits, dropping its error sender.
    assert!(errors.recv().await.is_none());
}

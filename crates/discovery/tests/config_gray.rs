//! Gray release: a value for some instances before it goes to all.

use std::sync::Arc;

use rampart_discovery::config::{
    ConfigStore, ConfigStoreError, Format, InstanceInfo, MemoryConfigStore, Selector,
    TypedErrorKind, clear_gray, get_for, get_gray, gray_key, promote_gray, put_gray, watch_typed,
    watch_typed_for,
};
use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
struct Limits {
    max_conns: u32,
}

fn store() -> Arc<dyn ConfigStore> {
    Arc::new(MemoryConfigStore::new())
}

#[test]
fn selector_matches_by_id_or_by_all_labels() {
    let canary = InstanceInfo::new("a-1")
        .label("canary", "true")
        .label("zone", "z1");
    let plain = InstanceInfo::new("a-2").label("zone", "z1");
    assert!(Selector::ids(["a-1"]).matches(&canary));
    assert!(!Selector::ids(["a-1"]).matches(&plain));
    let by_label = Selector::default()
        .label("canary", "true")
        .label("zone", "z1");
    assert!(by_label.matches(&canary));
    assert!(!by_label.matches(&plain), "every listed label must match");
    assert!(
        Selector::ids(["a-2"])
            .label("canary", "true")
            .matches(&plain)
    );
    assert!(
        !Selector::default().matches(&canary),
        "an empty selector matches nothing"
    );
    let s: Selector = toml::from_str("ids = [\"x\"]\nlabels = { canary = \"true\" }").unwrap();
    assert_eq!(s, Selector::ids(["x"]).label("canary", "true"));
    assert!(toml::from_str::<Selector>("id = [\"x\"]").is_err());
}

#[tokio::test]
async fn get_for_picks_the_gray_value_for_matching_instances_only() {
    let s = store();
    let main = s.put("k", "main".into()).await.unwrap();
    let canary = InstanceInfo::new("a-1");
    let other = InstanceInfo::new("a-2");
    let gray = put_gray(s.as_ref(), "k", "gray".into(), Selector::ids(["a-1"]))
        .await
        .unwrap();
    let for_canary = get_for(s.as_ref(), "k", &canary).await.unwrap().unwrap();
    assert_eq!(
        (for_canary.as_str(), for_canary.version),
        (Some("gray"), gray)
    );
    let for_other = get_for(s.as_ref(), "k", &other).await.unwrap().unwrap();
    assert_eq!(
        (for_other.as_str(), for_other.version),
        (Some("main"), main)
    );
    assert_eq!(
        s.get("k").await.unwrap().unwrap().as_str(),
        Some("main"),
        "main unchanged"
    );

    // Promote: the gray value goes to all, the gray key is gone.
    let promoted = promote_gray(s.as_ref(), "k").await.unwrap().unwrap();
    assert_eq!(s.get("k").await.unwrap().unwrap().version, promoted);
    assert_eq!(
        get_for(s.as_ref(), "k", &other)
            .await
            .unwrap()
            .unwrap()
            .as_str(),
        Some("gray")
    );
    assert_eq!(get_gray(s.as_ref(), "k").await.unwrap(), None);
    assert_eq!(promote_gray(s.as_ref(), "k").await.unwrap(), None);
}

#[tokio::test]
async fn an_empty_selector_is_refused() {
    let s = store();
    let err = put_gray(s.as_ref(), "k", "v".into(), Selector::default())
        .await
        .unwrap_err();
    match err {
        ConfigStoreError::Options(e) => assert_eq!(e.field(), "selector"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.get(&gray_key("k")).await.unwrap(), None);
}

#[tokio::test]
async fn typed_watch_for_an_instance_follows_gray_release() {
    let s = store();
    s.put("limits", r#"{"max_conns": 1}"#.into()).await.unwrap();
    let canary = InstanceInfo::new("a-1").label("canary", "true");
    let mut c = watch_typed_for::<Limits>(s.clone(), "limits", Format::Json, canary)
        .await
        .unwrap();
    let mut o =
        watch_typed_for::<Limits>(s.clone(), "limits", Format::Json, InstanceInfo::new("a-2"))
            .await
            .unwrap();
    let mut plain = watch_typed::<Limits>(s.clone(), "limits", Format::Json)
        .await
        .unwrap();
    let other_before = o.current();

    let selector = Selector::default().label("canary", "true");
    put_gray(
        s.as_ref(),
        "limits",
        r#"{"max_conns": 2}"#.into(),
        selector.clone(),
    )
    .await
    .unwrap();
    c.values.changed().await.unwrap();
    assert_eq!(c.current().max_conns, 2, "the canary gets the gray value");

    // A bad gray value: the canary keeps its last good value.
    put_gray(s.as_ref(), "limits", "{oops".into(), selector)
        .await
        .unwrap();
    assert!(matches!(
        c.errors.recv().await.unwrap().kind,
        TypedErrorKind::Decode(_)
    ));
    assert_eq!(c.current().max_conns, 2);

    // Abandon the gray release: the canary returns to the main value.
    clear_gray(s.as_ref(), "limits").await.unwrap();
    c.values.changed().await.unwrap();
    assert_eq!(c.current().max_conns, 1);

    // A bad main value is a barrier: once the other instance reports it,
    // its task has handled every gray change before it.
    let bad = s.put("limits", "bad".into()).await.unwrap();
    let first_error = o.errors.recv().await.unwrap();
    assert_eq!(
        first_error.version, bad,
        "no gray change was reported to it"
    );
    assert!(!o.values.has_changed().unwrap(), "no gray change woke it");
    assert!(Arc::ptr_eq(&other_before, &o.current()));

    // A good main change reaches everyone.
    s.put("limits", r#"{"max_conns": 5}"#.into()).await.unwrap();
    c.values.changed().await.unwrap();
    o.values.changed().await.unwrap();
    plain.values.changed().await.unwrap();
    assert_eq!(
        (
            c.current().max_conns,
            o.current().max_conns,
            plain.current().max_conns
        ),
        (5, 5, 5)
    );
}

#[tokio::test]
async fn typed_watch_for_starts_from_a_gray_value_without_a_main_value() {
    let s = store();
    put_gray(
        s.as_ref(),
        "new",
        r#"{"max_conns": 9}"#.into(),
        Selector::ids(["a-1"]),
    )
    .await
    .unwrap();
    let t = watch_typed_for::<Limits>(s.clone(), "new", Format::Json, InstanceInfo::new("a-1"))
        .await
        .unwrap();
    assert_eq!(t.current().max_conns, 9);
    let err = watch_typed_for::<Limits>(s.clone(), "new", Format::Json, InstanceInfo::new("a-2"))
        .await
        .unwrap_err();
    assert!(matches!(err, ConfigStoreError::NotFound { .. }), "{err:?}");
}

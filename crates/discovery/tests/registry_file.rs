//! The file registry: edits applied live as diffs, bad edits and deletions
//! keep the last good set, no-op writes change nothing. Paused time: the
//! checks run on the tokio clock.

mod common;

use std::path::Path;
use std::time::Duration;

use common::TempDir;
use rampart_core::testing::TestRecorder;
use rampart_discovery::config::Format;
use rampart_discovery::registry::{
    EntryProblem, Event, EventKind, FileRegistry, FileRegistryConfig, HealthStatus, Registry,
    RegistryError, SOURCE_ERRORS_TOTAL, ServiceName, SourceError, Watch,
};
use tokio::time::timeout;

fn name(s: &str) -> ServiceName {
    s.parse().unwrap()
}

/// A TOML list of `(id, port, weight)` instances of service `orders`.
fn list(instances: &[(&str, u16, u32)]) -> String {
    instances
        .iter()
        .map(|(id, port, weight)| {
            format!(
                "[[instance]]\nid = \"{id}\"\nservice = \"orders\"\naddress = \"10.0.0.1\"\nport = {port}\nweight = {weight}\n\n"
            )
        })
        .collect()
}

async fn open(path: &Path) -> FileRegistry {
    FileRegistry::open(FileRegistryConfig::new(path).name("edge"))
        .await
        .unwrap()
}

/// The next item of `watch`, waiting up to 10 s of (paused) time: the file
/// is checked every second meanwhile.
async fn next(watch: &mut Watch) -> Result<Event, RegistryError> {
    timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("an item within 10 s")
        .expect("the watch is open")
}

async fn next_event(watch: &mut Watch) -> (u64, EventKind, String, u32) {
    let e = next(watch).await.unwrap();
    (
        e.revision,
        e.kind,
        e.instance.id().to_owned(),
        e.instance.weight(),
    )
}

#[tokio::test(start_paused = true)]
async fn edits_are_applied_as_diffs() {
    let dir = TempDir::new("file-registry-edit");
    let path = dir.path("instances.toml");
    std::fs::write(&path, list(&[("a", 1, 1), ("b", 2, 1)])).unwrap();
    let registry = open(&path).await;
    let orders = name("orders");
    let mut watch = registry.watch(&orders).await.unwrap();
    assert_eq!(
        next_event(&mut watch).await,
        (1, EventKind::Insert, "a".into(), 1)
    );
    assert_eq!(
        next_event(&mut watch).await,
        (2, EventKind::Insert, "b".into(), 1)
    );

    // a goes, b changes weight, c comes
    std::fs::write(&path, list(&[("b", 2, 7), ("c", 3, 1)])).unwrap();
    assert_eq!(
        next_event(&mut watch).await,
        (3, EventKind::Remove, "a".into(), 1)
    );
    assert_eq!(
        next_event(&mut watch).await,
        (4, EventKind::Update, "b".into(), 7)
    );
    assert_eq!(
        next_event(&mut watch).await,
        (5, EventKind::Insert, "c".into(), 1)
    );
    let found = registry.discover(&orders).await.unwrap();
    assert_eq!(found.revision, 5);
    assert!(!found.stale);
    let ids: Vec<_> = found.instances.iter().map(|i| i.id()).collect();
    assert_eq!(ids, ["b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn a_bad_edit_keeps_the_last_good_set() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let dir = TempDir::new("file-registry-bad");
    let path = dir.path("instances.toml");
    let good = list(&[("a", 1, 1)]);
    std::fs::write(&path, &good).unwrap();
    let registry = open(&path).await;
    let orders = name("orders");
    let mut watch = registry.watch(&orders).await.unwrap();
    next(&mut watch).await.unwrap();

    // entry 2 has port 0: the whole edit is refused, naming it
    std::fs::write(&path, list(&[("a", 1, 9), ("b", 0, 1)])).unwrap();
    let err = next(&mut watch).await.unwrap_err();
    let RegistryError::Source(source) = &err else {
        panic!("{err:?}")
    };
    match &**source {
        SourceError::Entry {
            origin,
            entry,
            line,
            id,
            problem,
        } => {
            assert_eq!(origin, &path.display().to_string());
            assert_eq!((*entry, *line, id.as_deref()), (2, Some(8), Some("b")));
            assert!(matches!(**problem, EntryProblem::Invalid(_)));
        }
        other => panic!("{other:?}"),
    }
    let found = registry.discover(&orders).await.unwrap();
    assert!(found.stale, "the last good set is served, marked stale");
    assert_eq!(
        found.instances[0].weight(),
        1,
        "the bad edit's change is not applied"
    );
    assert_eq!(found.revision, 1);
    assert_eq!(
        recorder
            .get(SOURCE_ERRORS_TOTAL, &[("name", "edge")])
            .counter(),
        1
    );

    // reported once, not at every check; a syntax error is reported too
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(watch.try_next().is_none());
    std::fs::write(&path, "[[instance]\n").unwrap();
    let err = next(&mut watch).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::Source(s) if matches!(**s, SourceError::Syntax { line: Some(1), .. })),
        "{err:?}"
    );

    // fixed: applied, no longer stale
    std::fs::write(&path, list(&[("a", 1, 3)])).unwrap();
    assert_eq!(
        next_event(&mut watch).await,
        (2, EventKind::Update, "a".into(), 3)
    );
    assert!(!registry.discover(&orders).await.unwrap().stale);
    assert_eq!(
        recorder
            .get(SOURCE_ERRORS_TOTAL, &[("name", "edge")])
            .counter(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_no_op_write_gives_no_events() {
    let dir = TempDir::new("file-registry-noop");
    let path = dir.path("instances.json");
    let text =
        r#"{"instance": [{"id": "a", "service": "orders", "address": "10.0.0.1", "port": 1}]}"#;
    std::fs::write(&path, text).unwrap();
    let registry = open(&path).await;
    let orders = name("orders");
    let mut watch = registry.watch(&orders).await.unwrap();
    next(&mut watch).await.unwrap();

    // the same bytes again, several times across checks
    for _ in 0..3 {
        std::fs::write(&path, text).unwrap();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    // then a real edit: the first event after the no-op writes is its own
    std::fs::write(&path, text.replace("\"port\": 1", "\"port\": 2")).unwrap();
    let e = next(&mut watch).await.unwrap();
    assert_eq!(
        (e.revision, e.kind, e.instance.port()),
        (2, EventKind::Update, 2)
    );
    assert_eq!(registry.revision(), 2);
}

#[tokio::test(start_paused = true)]
async fn rename_replace_and_deletion_are_picked_up() {
    let dir = TempDir::new("file-registry-rename");
    let path = dir.path("instances.toml");
    std::fs::write(&path, list(&[("a", 1, 1)])).unwrap();
    let registry = open(&path).await;
    let orders = name("orders");
    let mut watch = registry.watch(&orders).await.unwrap();
    next(&mut watch).await.unwrap();

    // an editor's save: write a temporary file, rename it over the old one
    let tmp = dir.path(".instances.toml.swp");
    std::fs::write(&tmp, list(&[("a", 1, 1), ("b", 2, 1)])).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert_eq!(
        next_event(&mut watch).await,
        (2, EventKind::Insert, "b".into(), 1)
    );

    // deleted: reported once, last good set kept
    std::fs::remove_file(&path).unwrap();
    let err = next(&mut watch).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::Source(s) if matches!(&**s, SourceError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)),
        "{err:?}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(watch.try_next().is_none(), "reported once");
    let found = registry.discover(&orders).await.unwrap();
    assert!(found.stale);
    assert_eq!(found.instances.len(), 2);

    // back with the same content: no events, not stale any more
    std::fs::write(&path, list(&[("a", 1, 1), ("b", 2, 1)])).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!registry.discover(&orders).await.unwrap().stale);
    // back with other content: applied
    std::fs::write(&path, list(&[("b", 2, 1)])).unwrap();
    assert_eq!(
        next_event(&mut watch).await,
        (3, EventKind::Remove, "a".into(), 1)
    );
}

#[tokio::test(start_paused = true)]
async fn health_overlay_survives_refreshes_of_present_instances() {
    let dir = TempDir::new("file-registry-health");
    let path = dir.path("instances.toml");
    std::fs::write(&path, list(&[("a", 1, 1), ("b", 2, 1)])).unwrap();
    let registry = open(&path).await;
    let orders = name("orders");
    registry
        .set_health(&orders, "a", HealthStatus::Unhealthy)
        .await
        .unwrap();
    registry
        .set_health(&orders, "b", HealthStatus::Unhealthy)
        .await
        .unwrap();
    let mut watch = registry.watch(&orders).await.unwrap();
    next(&mut watch).await.unwrap();
    next(&mut watch).await.unwrap();

    // a changes weight (still unhealthy), b leaves, comes back healthy
    std::fs::write(&path, list(&[("a", 1, 4)])).unwrap();
    let e = next(&mut watch).await.unwrap();
    assert_eq!((e.kind, e.instance.id()), (EventKind::Remove, "b"));
    let e = next(&mut watch).await.unwrap();
    assert_eq!(
        (e.kind, e.instance.weight(), e.instance.health()),
        (EventKind::Update, 4, HealthStatus::Unhealthy)
    );
    std::fs::write(&path, list(&[("a", 1, 4), ("b", 2, 1)])).unwrap();
    let e = next(&mut watch).await.unwrap();
    assert_eq!(
        (e.kind, e.instance.id(), e.instance.health()),
        (EventKind::Insert, "b", HealthStatus::Healthy)
    );
    // the file is never rewritten
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        list(&[("a", 1, 4), ("b", 2, 1)])
    );
    // and it is read-only
    assert!(matches!(
        registry
            .register(common::instance("orders", "c"), Duration::from_secs(1))
            .await,
        Err(RegistryError::ReadOnly { backend: "file" })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_missing_or_bad_file_at_start_is_an_error() {
    let dir = TempDir::new("file-registry-start");
    let err = FileRegistry::open(FileRegistryConfig::new(dir.path("nope.toml")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SourceError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    let odd = dir.path("instances.conf");
    std::fs::write(&odd, list(&[("a", 1, 1)])).unwrap();
    assert!(matches!(
        FileRegistry::open(FileRegistryConfig::new(&odd)).await,
        Err(SourceError::UnknownFormat { .. })
    ));
    let registry = FileRegistry::open(FileRegistryConfig::new(&odd).format(Format::Toml))
        .await
        .unwrap();
    assert_eq!(registry.revision(), 1);
    std::fs::write(&odd, "[[instance]]\nid = 3\n").unwrap();
    assert!(matches!(
        FileRegistry::open(FileRegistryConfig::new(&odd).format(Format::Toml)).await,
        Err(SourceError::Entry { entry: 1, .. })
    ));
    assert!(matches!(
        FileRegistry::open(FileRegistryConfig::new(&odd).poll_interval(Duration::ZERO)).await,
        Err(SourceError::Config(e)) if e.field() == "poll_interval"
    ));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_registry_ends_watches() {
    let dir = TempDir::new("file-registry-drop");
    let path = dir.path("instances.toml");
    std::fs::write(&path, list(&[("a", 1, 1)])).unwrap();
    let registry = open(&path).await;
    let mut watch = registry.watch(&name("orders")).await.unwrap();
    next(&mut watch).await.unwrap();
    drop(registry);
    assert!(
        timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn the_tower_adapter_keeps_endpoints_through_a_bad_edit() {
    use futures::StreamExt;
    use rampart_discovery::registry::{Instance, discover};
    use tower::discover::Change;

    let dir = TempDir::new("file-registry-adapter");
    let path = dir.path("instances.toml");
    std::fs::write(&path, list(&[("a", 1, 1)])).unwrap();
    let registry = open(&path).await;
    let mut changes = discover(&registry, &name("orders"), |i: &Instance| i.port())
        .await
        .unwrap();
    let mut key = async || match timeout(Duration::from_secs(10), changes.next())
        .await
        .unwrap()
        .unwrap()
        .expect("no error reaches the balancer")
    {
        Change::Insert(k, port) => format!("+{k}:{port}"),
        Change::Remove(k) => format!("-{k}"),
    };
    assert_eq!(key().await, "+a:1");
    // a bad edit: skipped by the adapter; the next good edit comes through
    std::fs::write(&path, "not toml [").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    std::fs::write(&path, list(&[("b", 2, 1)])).unwrap();
    assert_eq!(key().await, "-a");
    assert_eq!(key().await, "+b:2");
}

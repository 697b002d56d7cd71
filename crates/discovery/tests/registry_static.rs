//! The static registry: a fixed list, parsed from TOML or JSON, read-only,
//! with a health overlay.

mod common;

use std::time::Duration;

use common::{drain, instance};
use rampart_discovery::config::Format;
use rampart_discovery::registry::{
    EntryProblem, EventKind, HealthStatus, Instance, InstanceError, LeaseId, Registry,
    RegistryError, ServiceName, SourceError, StaticRegistry, discover,
};
use tower::discover::Change;

fn name(s: &str) -> ServiceName {
    s.parse().unwrap()
}

const TOML: &str = r#"
[[instance]]
id = "orders-1"
service = "shop/orders"
address = "10.0.0.7"
port = 8080
weight = 5
zone = "eu-1a"
metadata = { version = "1.4.2" }

[[instance]]
id = "orders-2"
service = "shop/orders"
address = "orders-2.internal"
port = 8081
health = "unknown"

[[instance]]
id = "billing-1"
service = "billing"
address = "::1"
port = 9000
"#;

#[tokio::test]
async fn toml_and_json_lists_are_discovered_and_watched() {
    let registry = StaticRegistry::parse(TOML, Format::Toml).unwrap();
    let orders = registry.discover(&name("shop/orders")).await.unwrap();
    assert!(!orders.stale);
    let expected = [
        Instance::new("orders-1", "shop/orders", "10.0.0.7", 8080)
            .unwrap()
            .with_weight(5)
            .with_zone("eu-1a")
            .with_metadata("version", "1.4.2"),
        Instance::new("orders-2", "shop/orders", "orders-2.internal", 8081)
            .unwrap()
            .with_health(HealthStatus::Unknown),
    ];
    assert_eq!(orders.instances, expected);
    assert_eq!(registry.revision(), 3);

    let json = r#"{"instance": [
        {"id": "orders-1", "service": "shop/orders", "address": "10.0.0.7", "port": 8080,
         "weight": 5, "zone": "eu-1a", "metadata": {"version": "1.4.2"}},
        {"id": "orders-2", "service": "shop/orders", "address": "orders-2.internal", "port": 8081,
         "health": "unknown"}
    ]}"#;
    let from_json = StaticRegistry::parse(json, Format::Json).unwrap();
    assert_eq!(
        from_json
            .discover(&name("shop/orders"))
            .await
            .unwrap()
            .instances,
        expected
    );

    // a watch gets the list as inserts, each with its own revision
    let mut watch = registry.watch(&name("shop/orders")).await.unwrap();
    let seen: Vec<_> = drain(&mut watch)
        .into_iter()
        .map(|e| (e.kind, e.instance))
        .collect();
    assert_eq!(
        seen,
        expected.map(|i| (EventKind::Insert, i)),
        "snapshot inserts"
    );
    // an unknown service is empty, not an error
    let none = registry.discover(&name("nothing")).await.unwrap();
    assert!(none.instances.is_empty());
    // empty lists are lists
    for (text, format) in [("", Format::Toml), ("", Format::Json), ("{}", Format::Json)] {
        assert_eq!(StaticRegistry::parse(text, format).unwrap().revision(), 0);
    }
}

#[tokio::test]
async fn it_is_read_only() {
    let registry = StaticRegistry::new([instance("orders", "a")]).unwrap();
    fn read_only<T>(r: Result<T, RegistryError>) -> bool {
        matches!(r, Err(RegistryError::ReadOnly { backend: "static" }))
    }
    assert!(read_only(
        registry
            .register(instance("orders", "b"), Duration::from_secs(10))
            .await
    ));
    assert!(read_only(registry.heartbeat(LeaseId(1)).await));
    assert!(read_only(registry.deregister(LeaseId(1)).await));
    assert_eq!(
        registry
            .discover(&name("orders"))
            .await
            .unwrap()
            .instances
            .len(),
        1
    );
}

#[test]
fn invalid_entries_are_named() {
    // entry 2 (line 8) has port 0
    let text = "[[instance]]\nid = \"a\"\nservice = \"s\"\naddress = \"10.0.0.1\"\nport = 1\n\n\
                [[instance]]\nid = \"b\"\nservice = \"s\"\naddress = \"10.0.0.2\"\nport = 0\n";
    let err = StaticRegistry::parse(text, Format::Toml).unwrap_err();
    match &err {
        SourceError::Entry {
            entry,
            line,
            id,
            problem,
            ..
        } => {
            assert_eq!((*entry, *line, id.as_deref()), (2, Some(7), Some("b")));
            assert_eq!(**problem, EntryProblem::Invalid(InstanceError::ZeroPort));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "static list, entry 2 (line 7, id \"b\"): invalid instance: port 0"
    );

    // a missing field, an unknown field
    let err = StaticRegistry::parse(
        r#"{"instance": [{"id": "a", "service": "s"}]}"#,
        Format::Json,
    )
    .unwrap_err();
    assert!(
        matches!(&err, SourceError::Entry { entry: 1, problem, .. } if matches!(**problem, EntryProblem::Decode(_))),
        "{err:?}"
    );
    let err = StaticRegistry::parse(
        "[[instance]]\nid = \"a\"\nservice = \"s\"\naddress = \"h\"\nport = 1\ncolour = \"red\"",
        Format::Toml,
    )
    .unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");

    // not a list at all: a syntax error with its line
    let err = StaticRegistry::parse("[[instance]]\nid = \n", Format::Toml).unwrap_err();
    assert!(
        matches!(err, SourceError::Syntax { line: Some(2), .. }),
        "{err:?}"
    );
    let err = StaticRegistry::parse("{\n\"instance\": [,]}", Format::Json).unwrap_err();
    assert!(
        matches!(err, SourceError::Syntax { line: Some(2), .. }),
        "{err:?}"
    );

    // the same id twice in one service, from code or text
    let err = StaticRegistry::new([instance("s", "a"), instance("t", "a"), instance("s", "a")])
        .unwrap_err();
    assert!(
        matches!(&err, SourceError::Entry { entry: 3, problem, .. } if matches!(**problem, EntryProblem::DuplicateId(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn health_overlay_reaches_watchers_and_the_balancer() {
    let registry = StaticRegistry::new([instance("orders", "a"), instance("orders", "b")]).unwrap();
    let orders = name("orders");
    let mut changes = discover(&registry, &orders, |i: &Instance| i.id().to_owned())
        .await
        .unwrap();
    let mut watch = registry.watch(&orders).await.unwrap();
    drain(&mut watch);
    let revision = registry
        .set_health(&orders, "a", HealthStatus::Unhealthy)
        .await
        .unwrap();
    assert_eq!(revision, 3);
    // the same status again changes nothing
    assert_eq!(
        registry
            .set_health(&orders, "a", HealthStatus::Unhealthy)
            .await
            .unwrap(),
        3
    );
    let events = drain(&mut watch);
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0].revision,
            events[0].kind,
            events[0].instance.health()
        ),
        (3, EventKind::Update, HealthStatus::Unhealthy)
    );
    let found = registry.discover(&orders).await.unwrap();
    assert_eq!(found.instances[0].health(), HealthStatus::Unhealthy);

    use futures::StreamExt;
    let mut keys = Vec::new();
    for _ in 0..3 {
        keys.push(match changes.next().await.unwrap().unwrap() {
            Change::Insert(k, _) => format!("+{k}"),
            Change::Remove(k) => format!("-{k}"),
        });
    }
    assert_eq!(keys, ["+a", "+b", "-a"]);
    assert!(matches!(
        registry.set_health(&orders, "zz", HealthStatus::Healthy).await,
        Err(RegistryError::UnknownInstance { ref id, .. }) if id == "zz"
    ));
}

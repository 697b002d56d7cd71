//! Instances and service names are validated when built and when decoded.

use rampart_discovery::registry::{HealthStatus, Instance, InstanceError, ServiceName};

#[test]
fn refuses_invalid_instances_naming_the_cause() {
    assert_eq!(
        Instance::new("", "orders", "10.0.0.1", 80),
        Err(InstanceError::EmptyId)
    );
    assert_eq!(
        Instance::new("a", "orders", "10.0.0.1", 0),
        Err(InstanceError::ZeroPort)
    );
    for bad in [
        "",
        "bad host",
        "-lead.example",
        "a..b",
        "300.1.2.3",
        "x_y.example",
    ] {
        let err = Instance::new("a", "orders", bad, 80).unwrap_err();
        assert!(
            matches!(&err, InstanceError::InvalidAddress { address, .. } if address == bad),
            "{bad:?}: {err:?}"
        );
        assert!(err.to_string().contains("address"), "{err}");
    }
    for bad in ["", "a//b", "/a", "a/b/c/d", "a b", "ns/gr/sv!"] {
        let err = Instance::new("a", bad, "10.0.0.1", 80).unwrap_err();
        assert!(
            matches!(&err, InstanceError::InvalidService { service, .. } if service == bad),
            "{bad:?}: {err:?}"
        );
    }
    let v6 = |a| Instance::new("a", "orders", a, 80).unwrap().authority();
    assert_eq!(v6("::1"), "[::1]:80");
    assert_eq!(v6("[::1]"), "[::1]:80");
    assert_eq!(v6("10.0.0.1"), "10.0.0.1:80");
    assert_eq!(v6("db.example"), "db.example:80");
    for good in [
        "10.0.0.1",
        "::1",
        "[::1]",
        "orders.svc.cluster.local",
        "localhost",
        "a-b.example.",
    ] {
        assert!(Instance::new("a", "orders", good, 80).is_ok(), "{good}");
    }
}

#[test]
fn service_names_carry_namespace_and_group() {
    let short: ServiceName = "orders".parse().unwrap();
    let full: ServiceName = "default/default/orders".parse().unwrap();
    assert_eq!(short, full);
    let grouped: ServiceName = "shop/orders".parse().unwrap();
    assert_eq!(grouped.group(), "shop");
    assert_ne!(grouped, short);
    let ns: ServiceName = "prod/shop/orders".parse().unwrap();
    assert_eq!(
        (ns.namespace(), ns.group(), ns.service()),
        ("prod", "shop", "orders")
    );
}

#[test]
fn round_trips_through_serde_and_decoding_validates() {
    let i = Instance::new("o-1", "prod/shop/orders", "10.0.0.1", 8080)
        .unwrap()
        .with_weight(3)
        .with_zone("z1")
        .with_metadata("v", "2")
        .with_health(HealthStatus::Unknown);
    let json = serde_json::to_string(&i).unwrap();
    assert!(json.contains("\"service\":\"prod/shop/orders\""), "{json}");
    let back: Instance = serde_json::from_str(&json).unwrap();
    assert_eq!(back, i);

    let minimal: Instance =
        toml::from_str("id = \"o-2\"\nservice = \"orders\"\naddress = \"h.example\"\nport = 81")
            .unwrap();
    assert_eq!(
        (minimal.weight(), minimal.health()),
        (1, HealthStatus::Healthy)
    );

    let bad = toml::from_str::<Instance>(
        "id = \"o-2\"\nservice = \"orders\"\naddress = \"no way\"\nport = 81",
    )
    .unwrap_err();
    assert!(bad.to_string().contains("address \"no way\""), "{bad}");
    let unknown = toml::from_str::<Instance>(
        "id = \"o\"\nservice = \"s\"\naddress = \"h\"\nport = 1\ncolour = 1",
    );
    assert!(unknown.is_err());
    assert!(!i.clone().with_weight(0).is_routable());
    assert!(!i.clone().with_health(HealthStatus::Unhealthy).is_routable());
    assert!(i.is_routable());
}

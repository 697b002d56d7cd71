//! Configuration: defaults, validation, and loading from TOML.

use std::time::Duration;

use rampart_backpressure::{Admission, QueueConfig, QueueLayer, RateLimitConfig};
use rampart_core::keyed::KeyedConfig;

#[test]
fn defaults_are_documented_values() {
    let h = RateLimitConfig::default().build().unwrap().handle();
    assert_eq!(h.name(), "");
    assert_eq!(h.interval(), Duration::from_millis(10));
    assert_eq!(h.burst(), 100);
    assert_eq!(h.admission(), Admission::FailFast);
}

#[test]
fn setters_reach_the_limiter() {
    let h = RateLimitConfig::new()
        .name("api")
        .rate(3, Duration::from_secs(3))
        .burst(7)
        .admission(Admission::Backpressure)
        .build()
        .unwrap()
        .handle();
    assert_eq!(
        (h.name(), h.interval(), h.burst(), h.admission()),
        ("api", Duration::from_secs(1), 7, Admission::Backpressure)
    );
}

#[test]
fn refuses_bad_values_naming_the_field() {
    let s = Duration::from_secs(1);
    let cases = [
        (RateLimitConfig::new().rate(0, s), "rate"),
        (RateLimitConfig::new().rate(1, Duration::ZERO), "period"),
        (
            RateLimitConfig::new().rate(1, Duration::from_secs(86_401)),
            "period",
        ),
        (
            RateLimitConfig::new().rate(1_000_000_000, Duration::from_millis(1)),
            "rate",
        ),
        (RateLimitConfig::new().burst(0), "burst"),
        (
            RateLimitConfig::new().admission(Admission::Wait(Duration::ZERO)),
            "admission",
        ),
    ];
    for (config, field) in cases {
        let err = config.clone().build().unwrap_err();
        assert_eq!(err.field(), field, "{config:?}");
        let keyed = config
            .build_keyed(|r: &u32| *r, KeyedConfig::default())
            .unwrap_err();
        assert_eq!(keyed.field(), field);
    }
    let bad_keys = KeyedConfig {
        max_keys: 0,
        idle_timeout: None,
    };
    let err = RateLimitConfig::new()
        .build_keyed(|r: &u32| *r, bad_keys)
        .unwrap_err();
    assert_eq!(err.field(), "max_keys");
}

#[test]
fn loads_from_toml() {
    let config: RateLimitConfig = toml::from_str(
        r#"
        rate = 5
        period = "2s"
        admission = "backpressure"
        "#,
    )
    .unwrap();
    assert_eq!(
        config,
        RateLimitConfig::new()
            .rate(5, Duration::from_secs(2))
            .admission(Admission::Backpressure)
    );
    let config: RateLimitConfig = toml::from_str(r#"admission = "fail_fast""#).unwrap();
    assert_eq!(config, RateLimitConfig::default());
    let config: RateLimitConfig = toml::from_str(r#"admission = { wait = 250 }"#).unwrap();
    assert_eq!(
        config,
        RateLimitConfig::new().admission(Admission::Wait(Duration::from_millis(250)))
    );
}

#[test]
fn toml_refuses_unknown_keys_and_bad_values() {
    let err = toml::from_str::<RateLimitConfig>("rate = 5\nburts = 3").unwrap_err();
    assert!(err.to_string().contains("burts"), "{err}");
    assert!(toml::from_str::<RateLimitConfig>(r#"admission = "later""#).is_err());
    assert!(toml::from_str::<RateLimitConfig>(r#"period = "soon""#).is_err());
    assert!(toml::from_str::<RateLimitConfig>("rate = -1").is_err());
    // Parsed but refused at build, naming the field.
    let config: RateLimitConfig = toml::from_str("burst = 0").unwrap();
    assert_eq!(config.build().unwrap_err().field(), "burst");
}

#[tokio::test]
async fn queue_defaults_and_setters() {
    use tower::Layer;
    let layer: QueueLayer<()> = QueueConfig::default().build().unwrap();
    let svc = layer.layer(tower::service_fn(|()| async {
        Ok::<_, std::io::Error>(())
    }));
    let h = svc.handle();
    assert_eq!(
        (h.name(), h.capacity(), h.admission()),
        ("", 1024, Admission::FailFast)
    );
    assert_eq!((h.depth(), h.rejected()), (0, 0));

    let layer: QueueLayer<()> = QueueConfig::new()
        .name("ingest")
        .capacity(8)
        .admission(Admission::Backpressure)
        .build()
        .unwrap();
    let h = layer
        .layer(tower::service_fn(|()| async {
            Ok::<_, std::io::Error>(())
        }))
        .handle();
    assert_eq!(
        (h.name(), h.capacity(), h.admission()),
        ("ingest", 8, Admission::Backpressure)
    );
}

#[test]
fn queue_refuses_bad_values_naming_the_field() {
    let cases = [
        (QueueConfig::new().capacity(0), "capacity"),
        (QueueConfig::new().capacity(1_000_000_001), "capacity"),
        (
            QueueConfig::new().admission(Admission::Wait(Duration::ZERO)),
            "admission",
        ),
        (QueueConfig::new().shed_depth(0), "shed_depth"),
        (QueueConfig::new().capacity(8).shed_depth(8), "shed_depth"),
        (QueueConfig::new().capacity(8).shed_depth(9), "shed_depth"),
    ];
    for (config, field) in cases {
        assert_eq!(config.validate().unwrap_err().field(), field);
        let keyed = config
            .clone()
            .build_keyed(|r: &u32| *r, KeyedConfig::default())
            .unwrap_err();
        assert_eq!(keyed.field(), field);
        assert_eq!(config.build::<()>().unwrap_err().field(), field);
    }
    assert!(
        QueueConfig::new()
            .capacity(8)
            .shed_depth(7)
            .validate()
            .is_ok()
    );
    let bad_keys = KeyedConfig {
        max_keys: 1,
        idle_timeout: Some(Duration::ZERO),
    };
    let err = QueueConfig::new()
        .build_keyed(|r: &u32| *r, bad_keys)
        .unwrap_err();
    assert_eq!(err.field(), "idle_timeout");
}

#[test]
fn queue_loads_from_toml_and_refuses_unknown_keys() {
    let config: QueueConfig =
        toml::from_str("capacity = 16\nadmission = { wait = \"5ms\" }").unwrap();
    assert_eq!(
        config,
        QueueConfig::new()
            .capacity(16)
            .admission(Admission::Wait(Duration::from_millis(5)))
    );
    let err = toml::from_str::<QueueConfig>("capacty = 16").unwrap_err();
    assert!(err.to_string().contains("capacty"), "{err}");
    let config: QueueConfig = toml::from_str("capacity = 0").unwrap();
    assert_eq!(config.build::<()>().unwrap_err().field(), "capacity");
    let config: QueueConfig = toml::from_str("capacity = 16\nshed_depth = 12\nseed = 7").unwrap();
    assert_eq!(
        config,
        QueueConfig::new().capacity(16).shed_depth(12).seed(7)
    );
    let config: QueueConfig = toml::from_str("capacity = 16\nshed_depth = 16").unwrap();
    assert_eq!(config.build::<()>().unwrap_err().field(), "shed_depth");
}

#[tokio::test]
async fn queue_handle_reports_shed_depth() {
    use tower::Layer;
    let svc = |config: QueueConfig| {
        config
            .build::<()>()
            .unwrap()
            .layer(tower::service_fn(|()| async {
                Ok::<_, std::io::Error>(())
            }))
    };
    assert_eq!(svc(QueueConfig::new()).handle().shed_depth(), None);
    let h = svc(QueueConfig::new().capacity(8).shed_depth(6)).handle();
    assert_eq!(h.shed_depth(), Some(6));
}

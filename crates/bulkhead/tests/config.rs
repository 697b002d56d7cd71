//! Configuration: defaults, validation, and loading from TOML.

use std::time::Duration;

use rampart_bulkhead::BulkheadConfig;

#[test]
fn defaults_are_documented_values() {
    let layer = BulkheadConfig::default().build().unwrap();
    let h = layer.handle();
    assert_eq!(h.max_concurrent(), 100);
    assert_eq!(h.max_wait(), Duration::ZERO);
    assert_eq!(h.max_queued(), 0);
    assert_eq!(h.name(), "");
}

#[test]
fn setters_reach_the_bulkhead() {
    let h = BulkheadConfig::default()
        .name("payments")
        .max_concurrent(7)
        .max_wait(Duration::from_millis(20))
        .max_queued(3)
        .build()
        .unwrap()
        .handle();
    assert_eq!(
        (h.name(), h.max_concurrent(), h.max_wait(), h.max_queued()),
        ("payments", 7, Duration::from_millis(20), 3)
    );
}

#[test]
fn refuses_inconsistent_limits_naming_the_field() {
    let cases = [
        (
            BulkheadConfig::default().max_concurrent(0),
            "max_concurrent",
        ),
        (
            BulkheadConfig::default().max_concurrent(1_000_000_001),
            "max_concurrent",
        ),
        (
            BulkheadConfig::default().max_wait(Duration::from_millis(10)),
            "max_queued",
        ),
        (BulkheadConfig::default().max_queued(5), "max_wait"),
        (
            BulkheadConfig::default()
                .max_wait(Duration::from_millis(10))
                .max_queued(1_000_000_001),
            "max_queued",
        ),
    ];
    for (config, field) in cases {
        let err = config.clone().build().unwrap_err();
        assert_eq!(err.field(), field, "{config:?}");
        assert_eq!(config.validate().unwrap_err(), err);
    }
    let err = BulkheadConfig::default()
        .max_wait(Duration::from_millis(10))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config field \"max_queued\": must be at least 1 when max_wait is longer \
         than zero (a max wait with no queue)"
    );
}

#[test]
fn loads_from_toml() {
    let config: BulkheadConfig = toml::from_str(
        r#"
        name = "inventory"
        max_concurrent = 16
        max_wait = "250ms"
        max_queued = 32
        "#,
    )
    .unwrap();
    assert_eq!(
        config,
        BulkheadConfig::default()
            .name("inventory")
            .max_concurrent(16)
            .max_wait(Duration::from_millis(250))
            .max_queued(32)
    );
    let h = config.build().unwrap().handle();
    assert_eq!(h.max_wait(), Duration::from_millis(250));

    // every field is optional
    let partial: BulkheadConfig = toml::from_str("max_concurrent = 4").unwrap();
    assert_eq!(partial, BulkheadConfig::default().max_concurrent(4));
    let empty: BulkheadConfig = toml::from_str("").unwrap();
    assert_eq!(empty, BulkheadConfig::default());
}

#[test]
fn toml_refuses_unknown_keys() {
    let err = toml::from_str::<BulkheadConfig>("max_concurent = 4").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `max_concurent`"),
        "{err}"
    );
    // the old millisecond key is gone; a bad unit is named
    let err = toml::from_str::<BulkheadConfig>("max_wait_ms = 4").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `max_wait_ms`"),
        "{err}"
    );
    let err = toml::from_str::<BulkheadConfig>("max_wait = \"4 fortnights\"").unwrap_err();
    assert!(err.to_string().contains("unknown unit"), "{err}");
    // an integer is milliseconds
    let c: BulkheadConfig = toml::from_str("max_wait = 4\nmax_queued = 1").unwrap();
    assert_eq!(
        c,
        BulkheadConfig::new()
            .max_wait(Duration::from_millis(4))
            .max_queued(1)
    );
}

#[test]
fn toml_values_are_validated_by_build() {
    let config: BulkheadConfig = toml::from_str("max_wait = \"100ms\"").unwrap();
    assert_eq!(config.build().unwrap_err().field(), "max_queued");
}

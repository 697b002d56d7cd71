//! Configuration: defaults, validation naming the field, TOML.

use std::time::Duration;

use rampart_cache::CacheConfig;

fn key(k: &u32) -> Option<u32> {
    Some(*k)
}

#[test]
fn refuses_bad_values_naming_the_field() {
    let cases = [
        (CacheConfig::new().max_capacity(0), "max_capacity"),
        (CacheConfig::new().ttl(Duration::ZERO), "ttl"),
        (CacheConfig::new().tti(Duration::ZERO), "tti"),
        (CacheConfig::new().ttl_jitter(1.0), "ttl_jitter"),
        (CacheConfig::new().ttl_jitter(-0.1), "ttl_jitter"),
        (CacheConfig::new().ttl_jitter(f64::NAN), "ttl_jitter"),
        (
            CacheConfig::new().negative_ttl(Duration::ZERO),
            "negative_ttl",
        ),
        (CacheConfig::new().max_entry_weight(0), "max_entry_weight"),
        (
            CacheConfig::new().max_capacity(10).max_entry_weight(11),
            "max_entry_weight",
        ),
        (
            CacheConfig::new().stale_while_revalidate(Duration::ZERO),
            "stale_while_revalidate",
        ),
        (CacheConfig::new().early_refresh(0.0), "early_refresh"),
        (
            CacheConfig::new().early_refresh(f64::INFINITY),
            "early_refresh",
        ),
        (
            CacheConfig::new().log_interval(Duration::ZERO),
            "log_interval",
        ),
    ];
    for (config, field) in cases {
        let err = config
            .clone()
            .builder::<u32, u64, _, _>(key)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), field, "{config:?}");
        assert_eq!(config.validate().unwrap_err(), err);
    }
}

#[test]
fn max_entry_weight_needs_a_weigher() {
    let err = CacheConfig::new()
        .max_entry_weight(10)
        .builder::<u32, u64, _, _>(key)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_entry_weight");
    assert!(err.to_string().contains("weigher"), "{err}");
    assert!(
        CacheConfig::new()
            .max_entry_weight(10)
            .builder::<u32, u64, _, _>(key)
            .weigher(|_, _| 1)
            .build()
            .is_ok()
    );
}

#[test]
fn loads_from_toml_and_refuses_unknown_keys() {
    let config: CacheConfig = toml::from_str(
        r#"
        name = "users"
        max_capacity = 1000
        ttl = "1m"
        tti = "30s"
        ttl_jitter = 0.05
        negative_ttl = "2s"
        max_entry_weight = 100
        stale_while_revalidate = "10s"
        early_refresh = 1.5
        log_interval = "1m"
        seed = 9
        "#,
    )
    .unwrap();
    assert_eq!(
        config,
        CacheConfig::new()
            .name("users")
            .max_capacity(1000)
            .ttl(Duration::from_secs(60))
            .tti(Duration::from_secs(30))
            .ttl_jitter(0.05)
            .negative_ttl(Duration::from_secs(2))
            .max_entry_weight(100)
            .stale_while_revalidate(Duration::from_secs(10))
            .early_refresh(1.5)
            .log_interval(Duration::from_secs(60))
            .seed(9)
    );
    let err = toml::from_str::<CacheConfig>("ttl_seconds = 3").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    assert_eq!(
        toml::from_str::<CacheConfig>("").unwrap(),
        CacheConfig::default()
    );
}

//! `StrategyConfig`: every kind loads from TOML and builds; unknown keys
//! and bad values are refused with the field named.

use rampart_balance::strategy::{
    LeastRequestConfig, Load, MaglevConfig, PowerOfTwoChoicesConfig, RingHashConfig, StrategyConfig,
};

fn parse(s: &str) -> Result<StrategyConfig, toml::de::Error> {
    toml::from_str(s)
}

#[test]
fn every_kind_loads_and_builds() {
    let cases = [
        (r#"kind = "round_robin""#, StrategyConfig::RoundRobin {}),
        (
            r#"kind = "smooth_weighted_round_robin""#,
            StrategyConfig::SmoothWeightedRoundRobin {},
        ),
        (
            r#"kind = "weighted_random""#,
            StrategyConfig::WeightedRandom {},
        ),
        (
            "kind = \"least_request\"\nchoice_count = 3\nactive_request_bias = 0.5",
            StrategyConfig::LeastRequest(
                LeastRequestConfig::new()
                    .choice_count(3)
                    .active_request_bias(0.5),
            ),
        ),
        (
            "kind = \"power_of_two_choices\"\nload = \"pending\"",
            StrategyConfig::PowerOfTwoChoices(PowerOfTwoChoicesConfig::new().load(Load::Pending)),
        ),
        (
            "kind = \"ring_hash\"\nminimum_ring_size = 2048\nmaximum_ring_size = 4096\nhash_balance_factor = 1.25",
            StrategyConfig::RingHash(
                RingHashConfig::new()
                    .minimum_ring_size(2048)
                    .maximum_ring_size(4096)
                    .hash_balance_factor(1.25),
            ),
        ),
        (
            "kind = \"maglev\"\ntable_size = 5003\nhash_balance_factor = 2.0",
            StrategyConfig::Maglev(
                MaglevConfig::new()
                    .table_size(5003)
                    .hash_balance_factor(2.0),
            ),
        ),
    ];
    for (text, want) in cases {
        let cfg = parse(text).unwrap();
        assert_eq!(cfg, want);
        assert!(text.contains(cfg.kind()));
        assert_eq!(
            cfg.uses_hash(),
            matches!(cfg.kind(), "ring_hash" | "maglev")
        );
        cfg.build().unwrap();
    }
    // Settings have defaults.
    assert_eq!(
        parse(r#"kind = "maglev""#).unwrap(),
        StrategyConfig::Maglev(MaglevConfig::new())
    );
    assert_eq!(
        StrategyConfig::default(),
        StrategyConfig::PowerOfTwoChoices(PowerOfTwoChoicesConfig::new().load(Load::PeakEwma))
    );
}

#[test]
fn unknown_kinds_and_keys_are_refused() {
    assert!(parse(r#"kind = "fastest""#).is_err());
    assert!(parse("choice_count = 2").is_err(), "kind is required");
    let err = parse("kind = \"ring_hash\"\nminimum_ring = 10").unwrap_err();
    assert!(err.to_string().contains("minimum_ring"), "{err}");
    assert!(parse("kind = \"maglev\"\nchoice_count = 2").is_err());
    assert!(parse("kind = \"power_of_two_choices\"\nload = \"latency\"").is_err());
    assert!(parse("kind = \"round_robin\"\nweights = 1").is_err());
}

#[test]
fn bad_values_name_their_field() {
    let refused = [
        ("kind = \"least_request\"\nchoice_count = 1", "choice_count"),
        (
            "kind = \"least_request\"\nchoice_count = 101",
            "choice_count",
        ),
        (
            "kind = \"least_request\"\nactive_request_bias = -0.5",
            "active_request_bias",
        ),
        (
            "kind = \"ring_hash\"\nminimum_ring_size = 0",
            "minimum_ring_size",
        ),
        (
            "kind = \"ring_hash\"\nminimum_ring_size = 9000000",
            "minimum_ring_size",
        ),
        (
            "kind = \"ring_hash\"\nminimum_ring_size = 4096\nmaximum_ring_size = 1024",
            "maximum_ring_size",
        ),
        (
            "kind = \"ring_hash\"\nmaximum_ring_size = 9000000",
            "maximum_ring_size",
        ),
        (
            "kind = \"ring_hash\"\nhash_balance_factor = 0.9",
            "hash_balance_factor",
        ),
        ("kind = \"maglev\"\ntable_size = 65536", "table_size"),
        ("kind = \"maglev\"\ntable_size = 1", "table_size"),
        ("kind = \"maglev\"\ntable_size = 5000021", "table_size"),
        (
            "kind = \"maglev\"\nhash_balance_factor = -1.0",
            "hash_balance_factor",
        ),
    ];
    for (text, field) in refused {
        let cfg = parse(text).unwrap();
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.field(), field, "{text}");
        assert_eq!(cfg.build().unwrap_err(), err);
    }
    let err = RingHashConfig::new()
        .hash_balance_factor(f64::INFINITY)
        .validate()
        .unwrap_err();
    assert_eq!(err.field(), "hash_balance_factor");
    assert_eq!(
        MaglevConfig::new().table_size(65_537).validate(),
        Ok(()),
        "the default, a prime"
    );
}

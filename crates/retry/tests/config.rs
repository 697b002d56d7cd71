//! Configuration: validation naming fields, TOML loading.

use std::time::Duration;

use rampart_retry::{Backoff, BudgetConfig, RetryConfig};

const MS: Duration = Duration::from_millis(1);

fn field(cfg: RetryConfig) -> &'static str {
    cfg.build().expect_err("expected a refusal").field()
}

#[test]
fn defaults_build() {
    let layer = RetryConfig::new().build().unwrap();
    assert!(layer.budget().is_some(), "a budget by default");
    assert!(
        RetryConfig::new()
            .no_budget()
            .build()
            .unwrap()
            .budget()
            .is_none()
    );
}

#[test]
fn refusals_name_the_field() {
    assert_eq!(field(RetryConfig::new().max_attempts(0)), "max_attempts");
    assert_eq!(field(RetryConfig::new().max_attempts(101)), "max_attempts");
    assert!(RetryConfig::new().max_attempts(1).build().is_ok());
    assert_eq!(
        field(RetryConfig::new().backoff(Backoff::Constant {
            delay: Duration::ZERO
        })),
        "backoff.delay"
    );
    for b in [
        Backoff::Exponential {
            base: 100 * MS,
            cap: 99 * MS,
        },
        Backoff::FullJitter {
            base: 100 * MS,
            cap: 99 * MS,
        },
        Backoff::DecorrelatedJitter {
            base: 100 * MS,
            cap: 99 * MS,
        },
    ] {
        assert_eq!(field(RetryConfig::new().backoff(b)), "backoff.cap");
    }
    assert_eq!(
        field(RetryConfig::new().backoff(Backoff::Exponential {
            base: Duration::ZERO,
            cap: MS
        })),
        "backoff.base"
    );
    assert!(
        RetryConfig::new()
            .backoff(Backoff::Exponential { base: MS, cap: MS })
            .build()
            .is_ok(),
        "cap equal to base is fine"
    );
    assert_eq!(
        field(RetryConfig::new().per_try_timeout(Duration::ZERO)),
        "per_try_timeout"
    );
    assert_eq!(
        field(RetryConfig::new().deadline(Duration::ZERO)),
        "deadline"
    );
    assert_eq!(
        field(RetryConfig::new().budget(BudgetConfig::new().ratio(10.01))),
        "budget.ratio"
    );
    assert_eq!(
        field(RetryConfig::new().budget(BudgetConfig::new().ratio(-0.1))),
        "budget.ratio"
    );
    assert_eq!(
        field(RetryConfig::new().budget(BudgetConfig::new().window(Duration::ZERO, 10))),
        "budget.window"
    );
    assert_eq!(
        field(RetryConfig::new().budget(BudgetConfig::new().window(Duration::from_secs(1), 3601))),
        "budget.buckets"
    );
    let err = RetryConfig::new().max_attempts(0).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config field \"max_attempts\": must be at least 1, got 0"
    );
}

#[test]
fn loads_from_toml() {
    let cfg: RetryConfig = toml::from_str(
        r#"
        name = "payments"
        max_attempts = 4
        backoff = { kind = "exponential", base = "50ms", cap = "1s" }
        per_try_timeout = "300ms"
        deadline = "2s"
        max_retry_after = "5s"
        seed = 9
        budget = { ratio = 0.5, min_per_second = 2, window = "5s", buckets = 5 }
        "#,
    )
    .unwrap();
    let expected = RetryConfig::new()
        .name("payments")
        .max_attempts(4)
        .backoff(Backoff::Exponential {
            base: 50 * MS,
            cap: Duration::from_secs(1),
        })
        .per_try_timeout(300 * MS)
        .deadline(Duration::from_secs(2))
        .max_retry_after(Duration::from_secs(5))
        .seed(9)
        .budget(
            BudgetConfig::new()
                .ratio(0.5)
                .min_per_second(2)
                .window(Duration::from_secs(5), 5),
        );
    assert_eq!(cfg, expected);
    cfg.build().unwrap();

    let empty: RetryConfig = toml::from_str("").unwrap();
    assert_eq!(empty, RetryConfig::new());

    for kind in ["constant", "full_jitter", "decorrelated_jitter"] {
        let text = if kind == "constant" {
            "backoff = { kind = \"constant\", delay = \"20ms\" }".to_string()
        } else {
            format!("backoff = {{ kind = \"{kind}\", base = \"20ms\", cap = \"1s\" }}")
        };
        let cfg: RetryConfig = toml::from_str(&text).unwrap();
        cfg.build().unwrap();
    }
}

#[test]
fn toml_refuses_unknown_keys_and_bad_values() {
    let err = toml::from_str::<RetryConfig>("max_attempt = 3").unwrap_err();
    assert!(err.to_string().contains("max_attempt"), "{err}");
    assert!(toml::from_str::<RetryConfig>("budget = { ratio = 0.1, percent = 20 }").is_err());
    assert!(
        toml::from_str::<RetryConfig>(
            "backoff = { kind = \"constant\", delay = \"1s\", cap = \"2s\" }"
        )
        .is_err()
    );
    assert!(
        toml::from_str::<RetryConfig>("backoff = { kind = \"linear\", base = \"1s\" }").is_err()
    );
    assert!(toml::from_str::<RetryConfig>("deadline = \"10 parsecs\"").is_err());
    // Parses, but build refuses it and names the field.
    let cfg: RetryConfig = toml::from_str("max_attempts = 0").unwrap();
    assert_eq!(cfg.build().unwrap_err().field(), "max_attempts");
}

//! The panic threshold's boundaries and the slow-start ramp.

use std::time::Duration;

use proptest::prelude::*;
use rampart_balance::health::{PanicThreshold, SlowStart, SlowStartConfig};
use tokio::time::{Instant, advance};

#[test]
fn panic_threshold_boundaries() {
    let half = PanicThreshold::default();
    assert_eq!(half.percent(), 50.0);
    assert!(!half.in_panic(10, 10));
    assert!(!half.in_panic(5, 10), "exactly at the threshold: no panic");
    assert!(half.in_panic(4, 10));
    assert!(!half.in_panic(1, 2));
    assert!(half.in_panic(0, 1), "none healthy: balance across all");
    assert!(!half.in_panic(1, 1));
    assert!(
        !half.in_panic(0, 0),
        "no endpoints: nothing to balance across"
    );
    assert!(
        !half.in_panic(11, 10),
        "more healthy than total reads as all"
    );
    assert!(!half.in_panic(usize::MAX / 2, usize::MAX));

    for total in 0..50 {
        for healthy in 0..=total {
            assert!(!PanicThreshold::DISABLED.in_panic(healthy, total));
            let all = PanicThreshold::new(100.0).unwrap();
            assert_eq!(all.in_panic(healthy, total), healthy < total);
        }
    }
    let third = PanicThreshold::new(33.3).unwrap();
    assert!(!third.in_panic(333, 1000));
    assert!(third.in_panic(332, 1000));
}

#[test]
fn panic_threshold_refuses_values_outside_a_percentage() {
    for bad in [-0.1, 100.1, f64::NAN, f64::INFINITY] {
        let err = PanicThreshold::new(bad).unwrap_err();
        assert_eq!(err.field(), "panic_threshold");
    }
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Cfg {
        panic_threshold: PanicThreshold,
    }
    let cfg: Cfg = toml::from_str("panic_threshold = 30").unwrap();
    assert_eq!(cfg.panic_threshold.percent(), 30.0);
    let err = toml::from_str::<Cfg>("panic_threshold = 130.0")
        .err()
        .unwrap();
    assert!(err.to_string().contains("panic_threshold"), "{err}");
}

fn ramp(window_s: u64, aggression: f64, min_percent: f64) -> SlowStart {
    SlowStartConfig::new()
        .window(Duration::from_secs(window_s))
        .aggression(aggression)
        .min_weight_percent(min_percent)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn slow_start_ramps_linearly_from_the_floor_to_one() {
    let r = ramp(100, 1.0, 10.0);
    let since = Instant::now();
    let mut factors = Vec::new();
    for _ in 0..=11 {
        factors.push(r.factor(since, Instant::now()));
        advance(Duration::from_secs(10)).await;
    }
    let expected = [0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0];
    for (got, want) in factors.iter().zip(expected) {
        assert!((got - want).abs() < 1e-12, "{factors:?}");
    }
    assert!(!r.is_ramping(since, Instant::now()));
    assert_eq!(r.ends_at(since), since + Duration::from_secs(100));
    assert!(r.is_ramping(since, since + Duration::from_secs(99)));
    // A `since` in the future counts as just started.
    assert_eq!(r.factor(since + Duration::from_secs(5), since), 0.1);
}

#[test]
fn aggression_shapes_the_ramp() {
    let t0 = Instant::now();
    let at = |r: &SlowStart, s: u64| r.factor(t0, t0 + Duration::from_secs(s));
    let linear = ramp(100, 1.0, 1.0);
    let eager = ramp(100, 2.0, 1.0);
    let shy = ramp(100, 0.5, 1.0);
    assert!((at(&eager, 25) - 0.5).abs() < 1e-12, "sqrt(0.25)");
    assert!((at(&shy, 50) - 0.25).abs() < 1e-12, "0.5²");
    for s in 1..100 {
        assert!(at(&eager, s) > at(&linear, s));
        assert!(at(&shy, s) < at(&linear, s) || at(&shy, s) == 0.01);
    }
    // The floor holds whatever the shape.
    assert_eq!(at(&ramp(100, 0.5, 10.0), 20), 0.1);
}

#[test]
fn a_window_of_zero_turns_slow_start_off() {
    let off = SlowStartConfig::new().build().unwrap();
    let t0 = Instant::now();
    assert_eq!(off.window(), Duration::ZERO);
    assert_eq!(off.factor(t0, t0), 1.0);
    assert!(!off.is_ramping(t0, t0));
    assert_eq!(SlowStart::default().factor(t0, t0), 1.0);
}

#[test]
fn slow_start_config_names_the_refused_field() {
    let refused = [
        ("aggression = 0.0", "aggression"),
        ("aggression = -1.0", "aggression"),
        ("aggression = nan", "aggression"),
        ("aggression = inf", "aggression"),
        ("min_weight_percent = 0.0", "min_weight_percent"),
        ("min_weight_percent = 100.5", "min_weight_percent"),
        ("min_weight_percent = nan", "min_weight_percent"),
        ("window = \"9000h\"", "window"),
    ];
    for (text, field) in refused {
        let cfg: SlowStartConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.build().unwrap_err().field(), field, "{text}");
    }
    assert!(toml::from_str::<SlowStartConfig>("slow_start_window = \"1s\"").is_err());
    let cfg: SlowStartConfig =
        toml::from_str("window = \"1m\"\naggression = 1.5\nmin_weight_percent = 25.0").unwrap();
    assert_eq!(cfg.build().unwrap().window(), Duration::from_secs(60));
}

proptest! {
    #[test]
    fn the_ramp_is_monotone_bounded_and_complete(
        window_ms in 1u64..100_000,
        aggression in 0.05f64..20.0,
        min_percent in 0.1f64..=100.0,
        mut offsets in proptest::collection::vec(0u64..200_000, 1..50),
    ) {
        let r = SlowStartConfig::new()
            .window(Duration::from_millis(window_ms))
            .aggression(aggression)
            .min_weight_percent(min_percent)
            .build()
            .unwrap();
        let t0 = Instant::now();
        offsets.sort_unstable();
        let mut last = 0.0;
        for ms in offsets {
            let f = r.factor(t0, t0 + Duration::from_millis(ms));
            prop_assert!(f >= last, "monotone");
            prop_assert!(f >= min_percent / 100.0 - 1e-12 && f <= 1.0);
            if ms >= window_ms {
                prop_assert_eq!(f, 1.0);
            }
            last = f;
        }
    }
}

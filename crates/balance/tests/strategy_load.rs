//! Load-aware strategies: power of two choices (pending and peak EWMA) and
//! least request.

mod common;

use common::{Table, counts, pick, update};
use rampart_balance::strategy::{
    LeastRequest, LeastRequestConfig, Load, PowerOfTwoChoices, Strategy,
};
use rampart_core::random::SharedRng;

fn loaded(loads: &[u32], load: Load) -> Table {
    let mut table = Table::equal(loads.len());
    for (i, &l) in loads.iter().enumerate() {
        match load {
            Load::Pending => table.ep(i).pending = l,
            Load::PeakEwma => table.ep(i).cost = f64::from(l) * 1_000.0,
        }
    }
    table
}

#[test]
fn p2c_never_picks_the_worse_of_two() {
    for load in [Load::Pending, Load::PeakEwma] {
        let mut p2c = PowerOfTwoChoices::new(load);
        // Two endpoints: always the lighter, whichever is drawn first.
        let table = loaded(&[9, 4], load);
        update(&mut p2c, &table);
        let rng = SharedRng::new(1);
        for _ in 0..10_000 {
            assert_eq!(pick(&mut p2c, &table, &[0, 1], None, &rng), Some(1));
        }
        // Ten distinct loads: the heaviest is never picked, the lightest
        // wins every draw it is in (2/n of them).
        let table = loaded(&[5, 3, 9, 1, 8, 7, 2, 6, 4, 10], load);
        let all = table.occupied();
        let picks: Vec<_> = (0..100_000)
            .map(|_| pick(&mut p2c, &table, &all, None, &rng).unwrap())
            .collect();
        let c = counts(&picks, 10);
        assert_eq!(c[9], 0, "{load:?}: the heaviest was picked");
        assert!((19_000..=21_000).contains(&c[3]), "{load:?}: {c:?}");
        // Not routable: never picked, even when lightest.
        for _ in 0..1000 {
            let p = pick(&mut p2c, &table, &[0, 2, 9], None, &rng).unwrap();
            assert!(p == 0 || p == 2, "{p}");
        }
    }
}

#[test]
fn p2c_compares_the_configured_load() {
    // Many pending but fast, versus idle but slow.
    let mut table = Table::equal(2);
    table.ep(0).pending = 50;
    table.ep(0).cost = 1.0;
    table.ep(1).cost = 1e9;
    let rng = SharedRng::new(3);
    let mut by_pending = PowerOfTwoChoices::new(Load::Pending);
    let mut by_cost = PowerOfTwoChoices::new(Load::PeakEwma);
    assert_eq!(pick(&mut by_pending, &table, &[0, 1], None, &rng), Some(1));
    assert_eq!(pick(&mut by_cost, &table, &[0, 1], None, &rng), Some(0));
}

#[test]
fn p2c_repeats_with_its_seed_and_handles_tiny_sets() {
    let table = Table::equal(8);
    let all = table.occupied();
    let run = |seed| {
        let rng = SharedRng::new(seed);
        let mut p2c = PowerOfTwoChoices::new(Load::Pending);
        (0..1000)
            .map(|_| pick(&mut p2c, &table, &all, None, &rng).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
    // Ties go to the first drawn: equal loads spread over everyone.
    let c = counts(&run(5), 8);
    assert!(c.iter().all(|&n| n > 80), "{c:?}");
    let rng = SharedRng::new(0);
    let mut p2c = PowerOfTwoChoices::new(Load::PeakEwma);
    assert_eq!(pick(&mut p2c, &table, &[6], None, &rng), Some(6));
    assert_eq!(pick(&mut p2c, &table, &[], None, &rng), None);
}

#[test]
fn least_request_with_equal_weights_takes_the_fewest_pending_of_its_choices() {
    let mut table = Table::equal(5);
    for (i, p) in [4, 6, 1, 9, 3].into_iter().enumerate() {
        table.ep(i).pending = p;
    }
    let rng = SharedRng::new(8);
    let all = table.occupied();
    // 64 draws (with replacement) out of 5: the least loaded is always
    // among them (odds of missing it: 0.8⁶⁴ ≈ 6e-7 per pick; seeded).
    let mut lr = LeastRequestConfig::new().choice_count(64).build().unwrap();
    update(&mut lr, &table);
    for _ in 0..1000 {
        assert_eq!(pick(&mut lr, &table, &all, None, &rng), Some(2));
    }
    // Two choices: the busiest only when drawn twice (1/25).
    let mut lr = LeastRequest::new();
    update(&mut lr, &table);
    let picks: Vec<_> = (0..100_000)
        .map(|_| pick(&mut lr, &table, &all, None, &rng).unwrap())
        .collect();
    let c = counts(&picks, 5);
    assert!((3_500..=4_500).contains(&c[3]), "{c:?}");
    assert!(
        c[2] > c[4] && c[4] > c[0] && c[0] > c[1] && c[1] > c[3],
        "{c:?}"
    );
}

#[test]
fn least_request_with_unequal_weights_balances_weight_over_load() {
    let shares = |bias: f64, pending: [u32; 3]| {
        let mut table = Table::weighted(&[2, 1, 1]);
        for (i, p) in pending.into_iter().enumerate() {
            table.ep(i).pending = p;
        }
        let mut lr = LeastRequestConfig::new()
            .active_request_bias(bias)
            .build()
            .unwrap();
        update(&mut lr, &table);
        let rng = SharedRng::new(2);
        let all = table.occupied();
        let picks: Vec<_> = (0..100_000)
            .map(|_| pick(&mut lr, &table, &all, None, &rng).unwrap())
            .collect();
        counts(&picks, 3)
    };
    // Idle: by weight, smoothly, 2:1:1 exactly.
    assert_eq!(shares(1.0, [0, 0, 0]), [50_000, 25_000, 25_000]);
    // a has 3 pending: 2/4 against 1 and 1 → 0.5 : 1 : 1.
    assert_eq!(shares(1.0, [3, 0, 0]), [20_000, 40_000, 40_000]);
    // Bias 0 ignores load.
    assert_eq!(shares(0.0, [3, 0, 0]), [50_000, 25_000, 25_000]);
    // Bias 2: 2/16 against 1 and 1 → 1 : 8 : 8.
    let c = shares(2.0, [3, 0, 0]);
    assert!((5_800..=5_900).contains(&c[0]), "{c:?}");
}

#[test]
fn least_request_switches_mode_with_slow_start() {
    // Equal configured weights, but one ramping: weighted mode, which
    // gives the ramping endpoint its reduced share.
    let mut table = Table::equal(2);
    table.ep(1).effective_weight = 0.25;
    let mut lr = LeastRequest::new();
    update(&mut lr, &table);
    let rng = SharedRng::new(4);
    let picks: Vec<_> = (0..50_000)
        .map(|_| pick(&mut lr, &table, &[0, 1], None, &rng).unwrap())
        .collect();
    assert_eq!(counts(&picks, 2), [40_000, 10_000]);
    assert_eq!(pick(&mut lr, &table, &[], None, &rng), None);
}

#[test]
fn least_request_settings_are_validated() {
    let err = LeastRequestConfig::new()
        .choice_count(1)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "choice_count");
    let err = LeastRequestConfig::new()
        .active_request_bias(f64::NAN)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "active_request_bias");
    let err = LeastRequestConfig::new()
        .active_request_bias(-1.0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "active_request_bias");
    let _: Box<dyn Strategy> =
        Box::new(LeastRequestConfig::new().choice_count(100).build().unwrap());
}

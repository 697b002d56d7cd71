//! Distribution over 100,000 picks: round robin exact, smooth weighted
//! round robin exact per weight cycle and burst-free, weighted random
//! within statistical bounds.

mod common;

use common::{Table, counts, pick, picks, update};
use rampart_balance::strategy::{RoundRobin, SmoothWeightedRoundRobin, WeightedRandom};
use rampart_core::random::SharedRng;

const N: usize = 100_000;

#[test]
fn round_robin_is_an_exact_rotation() {
    let table = Table::equal(8);
    let rng = SharedRng::new(3);
    let mut rr = RoundRobin::new();
    update(&mut rr, &table);
    let seq = picks(&mut rr, &table, N, &rng);
    assert_eq!(counts(&seq, 8), vec![N / 8; 8]);
    // Every slot follows its predecessor: a rotation, not just fair counts.
    for w in seq.windows(2) {
        assert_eq!(w[1], (w[0] + 1) % 8, "rotation broken: {w:?}");
    }
}

#[test]
fn round_robin_ignores_weights_and_skips_free_and_unroutable_slots() {
    let mut table = Table::weighted(&[1, 9, 1, 1, 1]);
    table.slots[3] = None;
    let rng = SharedRng::new(3);
    let mut rr = RoundRobin::new();
    update(&mut rr, &table);
    let routable = [0, 1, 4];
    let seq: Vec<_> = (0..30_000)
        .map(|_| pick(&mut rr, &table, &routable, None, &rng).unwrap())
        .collect();
    assert_eq!(counts(&seq, 5), vec![10_000, 10_000, 0, 0, 10_000]);
}

#[test]
fn round_robin_continues_after_the_last_pick_when_the_set_changes() {
    let table = Table::equal(6);
    let rng = SharedRng::new(9);
    let mut rr = RoundRobin::new();
    update(&mut rr, &table);
    let all = [0, 1, 2, 3, 4, 5];
    while pick(&mut rr, &table, &all, None, &rng) != Some(2) {}
    // Slot 3 is ejected: the rotation goes on at 4, not back at 0.
    let fewer = [0, 1, 2, 4, 5];
    assert_eq!(pick(&mut rr, &table, &fewer, None, &rng), Some(4));
    assert_eq!(pick(&mut rr, &table, &fewer, None, &rng), Some(5));
    assert_eq!(pick(&mut rr, &table, &fewer, None, &rng), Some(0));
    // Only low slots left: wraps to the first of them.
    assert_eq!(pick(&mut rr, &table, &[0, 1], None, &rng), Some(1));
    assert_eq!(pick(&mut rr, &table, &[0, 1], None, &rng), Some(0));
    assert_eq!(pick(&mut rr, &table, &[], None, &rng), None);
    // 3 is back after 0: next is 1, then 3.
    assert_eq!(pick(&mut rr, &table, &all, None, &rng), Some(1));
    assert_eq!(pick(&mut rr, &table, &all, None, &rng), Some(2));
    assert_eq!(pick(&mut rr, &table, &all, None, &rng), Some(3));
}

#[test]
fn swrr_follows_nginx_sequence_for_5_1_1_in_every_cycle() {
    let table = Table::weighted(&[5, 1, 1]);
    let rng = SharedRng::new(1);
    let mut swrr = SmoothWeightedRoundRobin::new();
    update(&mut swrr, &table);
    let seq = picks(&mut swrr, &table, 7 * (N / 7), &rng);
    // nginx's documented order: a a b a c a a.
    for (i, cycle) in seq.chunks(7).enumerate() {
        assert_eq!(cycle, [0, 0, 1, 0, 2, 0, 0], "cycle {i}");
    }
}

/// Exact counts per weight cycle, and in every window of every length
/// up to a cycle, no endpoint more than `ceil(w/total × window) + 1`
/// times.
fn assert_smooth(weights: &[u32]) {
    let table = Table::weighted(weights);
    let rng = SharedRng::new(1);
    let mut swrr = SmoothWeightedRoundRobin::new();
    update(&mut swrr, &table);
    let total: usize = weights.iter().map(|&w| w as usize).sum();
    let seq = picks(&mut swrr, &table, N, &rng);
    for (i, cycle) in seq.chunks_exact(total).enumerate() {
        let expected: Vec<usize> = weights.iter().map(|&w| w as usize).collect();
        assert_eq!(counts(cycle, weights.len()), expected, "cycle {i}");
    }
    for (slot, &w) in weights.iter().enumerate() {
        // Prefix sums of this slot's picks.
        let mut prefix = vec![0usize; seq.len() + 1];
        for (i, &p) in seq.iter().enumerate() {
            prefix[i + 1] = prefix[i] + usize::from(p == slot);
        }
        for window in 1..=total {
            let bound = (w as usize * window).div_ceil(total) + 1;
            let worst = (0..=seq.len() - window)
                .map(|s| prefix[s + window] - prefix[s])
                .max()
                .unwrap();
            assert!(
                worst <= bound,
                "slot {slot} (weight {w}) picked {worst} times in a window of {window} (bound {bound})"
            );
        }
    }
}

#[test]
fn swrr_is_exact_per_cycle_and_burst_free() {
    assert_smooth(&[5, 1, 1]);
    assert_smooth(&[7, 3, 11, 1, 5]);
    assert_smooth(&[100, 1, 1, 1]);
}

#[test]
fn swrr_picks_only_routable_and_keeps_state_for_surviving_slots() {
    let mut table = Table::weighted(&[3, 1]);
    let rng = SharedRng::new(1);
    // Cycle for 3, 1: a a b a.
    let mut swrr = SmoothWeightedRoundRobin::new();
    update(&mut swrr, &table);
    assert_eq!(picks(&mut swrr, &table, 2, &rng), [0, 0]);
    // The same endpoints again (and a new one in a new slot that is not
    // routable): state survives, b is next.
    table.slots.push(Some(common::Ep::new("new", 50)));
    update(&mut swrr, &table);
    assert_eq!(pick(&mut swrr, &table, &[0, 1], None, &rng), Some(1));

    // Slot 1 now holds another endpoint: its state restarts at 0, so a
    // (ahead now) is picked where b would have been.
    let mut swrr = SmoothWeightedRoundRobin::new();
    let mut table = Table::weighted(&[3, 1]);
    update(&mut swrr, &table);
    assert_eq!(picks(&mut swrr, &table, 2, &rng), [0, 0]);
    table.ep(1).id = "replacement".into();
    update(&mut swrr, &table);
    assert_eq!(pick(&mut swrr, &table, &[0, 1], None, &rng), Some(0));

    // Only routable slots: the heavy one is never picked while excluded.
    let table = Table::weighted(&[100, 1, 1]);
    let mut swrr = SmoothWeightedRoundRobin::new();
    update(&mut swrr, &table);
    for _ in 0..1000 {
        assert_ne!(pick(&mut swrr, &table, &[1, 2], None, &rng), Some(0));
    }
    assert_eq!(pick(&mut swrr, &table, &[], None, &rng), None);
}

#[test]
fn swrr_follows_effective_weight() {
    // Slow start halves a's weight: 5 → 2.5 against 1 and 1: shares 5:2:2.
    let mut table = Table::weighted(&[5, 1, 1]);
    table.ep(0).effective_weight = 2.5;
    let rng = SharedRng::new(1);
    let mut swrr = SmoothWeightedRoundRobin::new();
    update(&mut swrr, &table);
    let seq = picks(&mut swrr, &table, 9 * 10_000, &rng);
    assert_eq!(counts(&seq, 3), [50_000, 20_000, 20_000]);
}

#[test]
fn weighted_random_is_within_five_sigma_and_repeats_with_its_seed() {
    let weights = [1u32, 2, 3, 4, 10];
    let total: u32 = weights.iter().sum();
    let table = Table::weighted(&weights);
    let run = |seed| {
        let rng = SharedRng::new(seed);
        let mut wr = WeightedRandom::new();
        update(&mut wr, &table);
        picks(&mut wr, &table, N, &rng)
    };
    let seq = run(42);
    assert_eq!(seq, run(42), "same seed, same picks");
    assert_ne!(seq, run(43));
    let c = counts(&seq, weights.len());
    for (slot, &w) in weights.iter().enumerate() {
        let p = f64::from(w) / f64::from(total);
        let mean = N as f64 * p;
        let sigma = (N as f64 * p * (1.0 - p)).sqrt();
        let got = c[slot] as f64;
        assert!(
            (got - mean).abs() <= 5.0 * sigma,
            "slot {slot}: {got} picks, expected {mean:.0} ± {:.0}",
            5.0 * sigma
        );
    }
}

#[test]
fn weighted_random_picks_only_routable_by_effective_weight() {
    let mut table = Table::weighted(&[1000, 1, 1]);
    // The light ones ramp: effective weights 1000 → 1 make all equal.
    table.ep(0).effective_weight = 1.0;
    let rng = SharedRng::new(5);
    let mut wr = WeightedRandom::new();
    update(&mut wr, &table);
    let seq: Vec<_> = (0..30_000)
        .map(|_| pick(&mut wr, &table, &[0, 2], None, &rng).unwrap())
        .collect();
    let c = counts(&seq, 3);
    assert_eq!(c[1], 0);
    assert!((14_000..=16_000).contains(&c[0]), "{c:?}");
    assert_eq!(pick(&mut wr, &table, &[], None, &rng), None);
}

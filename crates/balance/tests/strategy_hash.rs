//! Consistent hashing: ring and Maglev remap about 1/n of keys when one of
//! n endpoints goes, Maglev's table matches the weights, bounded load
//! holds, unroutable endpoints are walked past, no key falls back to
//! random.

mod common;

use common::{Table, counts, pick, update};
use rampart_balance::strategy::{Maglev, MaglevConfig, RingHash, RingHashConfig, Strategy};
use rampart_core::random::SharedRng;

const KEYS: u64 = 100_000;

fn owners(s: &mut dyn Strategy, table: &Table, routable: &[usize]) -> Vec<usize> {
    let rng = SharedRng::new(0);
    (0..KEYS)
        .map(|k| pick(s, table, routable, Some(k), &rng).expect("a routable slot"))
        .collect()
}

/// Removes slot `gone` of `n` equal endpoints; returns (share of keys
/// remapped, share of keys remapped that were not on `gone`).
fn removal(s: &mut dyn Strategy, n: usize, gone: usize) -> (f64, f64) {
    let mut table = Table::equal(n);
    update(s, &table);
    let before = owners(s, &table, &table.occupied());
    table.slots[gone] = None;
    update(s, &table);
    let after = owners(s, &table, &table.occupied());
    assert!(after.iter().all(|&o| o != gone));
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let strays = before
        .iter()
        .zip(&after)
        .filter(|&(&b, &a)| b != gone && b != a)
        .count();
    (moved as f64 / KEYS as f64, strays as f64 / KEYS as f64)
}

#[test]
fn ring_removing_one_of_n_remaps_about_one_nth() {
    // Exactly its own keys: no key of a staying endpoint moves.
    for (n, gone) in [(10, 4), (5, 0), (16, 15), (64, 3)] {
        let mut ring = RingHash::new();
        let (moved, strays) = removal(&mut ring, n, gone);
        let ideal = 1.0 / n as f64;
        assert!(
            (ideal * 0.85..=ideal * 1.15).contains(&moved),
            "n = {n}: {moved:.4} of keys moved, ideal {ideal:.4}"
        );
        assert_eq!(strays, 0.0, "n = {n}: keys of staying endpoints moved");
    }
}

#[test]
fn maglev_removing_one_of_n_remaps_about_one_nth() {
    for (n, gone) in [(10, 4), (5, 0), (16, 15)] {
        let mut maglev = Maglev::new();
        let (moved, strays) = removal(&mut maglev, n, gone);
        let ideal = 1.0 / n as f64;
        assert!(
            (ideal * 0.8..=ideal * 1.6).contains(&moved),
            "n = {n}: {moved:.4} of keys moved, ideal {ideal:.4}"
        );
        assert!(
            strays <= 0.05,
            "n = {n}: {strays:.4} of keys of staying endpoints moved"
        );
    }
}

#[test]
fn maglev_table_shares_match_weights() {
    for weights in [
        vec![1u32; 7],
        vec![1, 2, 3, 4, 5, 6, 7, 8],
        vec![100, 1, 10, 1000],
    ] {
        let table = Table::weighted(&weights);
        let mut maglev = Maglev::new();
        update(&mut maglev, &table);
        let entries = maglev.entries_per_slot();
        let total: u32 = weights.iter().sum();
        let size: usize = entries.iter().sum();
        assert_eq!(size, 65537);
        for (slot, &w) in weights.iter().enumerate() {
            let want = f64::from(w) / f64::from(total);
            let got = entries[slot] as f64 / size as f64;
            assert!(
                (got - want).abs() <= 0.01 * want + 0.000_1,
                "weights {weights:?}, slot {slot}: table share {got:.5}, weight share {want:.5}"
            );
        }
        // Keys follow the table.
        let c = counts(
            &owners(&mut maglev, &table, &table.occupied()),
            weights.len(),
        );
        for (slot, &w) in weights.iter().enumerate() {
            let want = f64::from(w) / f64::from(total);
            let got = c[slot] as f64 / KEYS as f64;
            assert!(
                (got - want).abs() <= 0.1 * want + 0.002,
                "slot {slot}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn ring_shares_follow_weights() {
    let weights = [1u32, 2, 3, 4];
    let table = Table::weighted(&weights);
    let mut ring = RingHashConfig::new()
        .minimum_ring_size(65_536)
        .build()
        .unwrap();
    update(&mut ring, &table);
    assert_eq!(ring.ring_size(), 65_536 * 10 / 4);
    let c = counts(&owners(&mut ring, &table, &table.occupied()), 4);
    for (slot, &w) in weights.iter().enumerate() {
        let want = f64::from(w) / 10.0;
        let got = c[slot] as f64 / KEYS as f64;
        assert!(
            (got - want).abs() <= 0.05 * want,
            "slot {slot}: {got:.4} vs {want}"
        );
    }
}

#[test]
fn ring_defaults_spread_keys_evenly() {
    // Short, similar ids ("e10", "e11") must not share points.
    let table = Table::equal(16);
    let mut ring = RingHash::new();
    update(&mut ring, &table);
    let c = counts(&owners(&mut ring, &table, &table.occupied()), 16);
    let fair = KEYS as f64 / 16.0;
    for (slot, &got) in c.iter().enumerate() {
        assert!(
            (got as f64 - fair).abs() <= 0.15 * fair,
            "slot {slot}: {c:?}"
        );
    }
}

#[test]
fn ring_size_respects_minimum_and_maximum() {
    // Weights 1, 2, 3: the heaviest gets 1024 points, the others
    // ceil(1024 / 3) = 342 and ceil(2048 / 3) = 683.
    let mut ring = RingHash::new();
    update(&mut ring, &Table::weighted(&[1, 2, 3]));
    assert_eq!(ring.ring_size(), 1024 + 342 + 683);
    // Weight units do not matter, only ratios.
    update(&mut ring, &Table::weighted(&[1000; 64]));
    assert_eq!(ring.ring_size(), 64 * 1024);
    // A light endpoint among heavy ones still gets a point: ceil(1024 / 1000).
    update(&mut ring, &Table::weighted(&[1, 1000, 1000]));
    assert_eq!(ring.ring_size(), 2 + 2048);
    // The maximum caps it, one point per endpoint at least.
    let mut small = RingHashConfig::new()
        .minimum_ring_size(100)
        .maximum_ring_size(100)
        .build()
        .unwrap();
    update(&mut small, &Table::weighted(&[1, 1, 1000]));
    assert!(small.ring_size() <= 102, "{}", small.ring_size());
    let rng = SharedRng::new(1);
    let t = Table::weighted(&[1, 1, 1000]);
    assert!((0..100).all(|k| pick(&mut small, &t, &[0], Some(k), &rng) == Some(0)));
}

/// Not routable: its keys go to the next routable endpoint, all other keys
/// stay, and they come back when it is routable again.
fn assert_skips_unroutable(s: &mut dyn Strategy) {
    let table = Table::equal(8);
    update(s, &table);
    let all = table.occupied();
    let before = owners(s, &table, &all);
    let without_3: Vec<usize> = all.iter().copied().filter(|&x| x != 3).collect();
    let during = owners(s, &table, &without_3);
    for (b, d) in before.iter().zip(&during) {
        if *b == 3 {
            assert_ne!(*d, 3);
        } else {
            assert_eq!(b, d);
        }
    }
    assert!(before.contains(&3));
    assert_eq!(owners(s, &table, &all), before);
    // Only one routable: every key goes there.
    assert!(owners(s, &table, &[6]).iter().all(|&o| o == 6));
    let rng = SharedRng::new(0);
    assert_eq!(pick(s, &table, &[], Some(1), &rng), None);
}

#[test]
fn unroutable_endpoints_are_walked_past() {
    assert_skips_unroutable(&mut RingHash::new());
    assert_skips_unroutable(&mut Maglev::new());
}

/// Without a key: a seeded random routable slot, all of them reached.
fn assert_keyless_fallback(s: &mut dyn Strategy) {
    let table = Table::equal(6);
    update(s, &table);
    let routable = [0, 2, 5];
    let run = |s: &mut dyn Strategy, seed| {
        let rng = SharedRng::new(seed);
        (0..3000)
            .map(|_| pick(s, &table, &routable, None, &rng).unwrap())
            .collect::<Vec<_>>()
    };
    let seq = run(s, 11);
    assert_eq!(seq, run(s, 11));
    let c = counts(&seq, 6);
    assert_eq!((c[1], c[3], c[4]), (0, 0, 0));
    assert!([0, 2, 5].iter().all(|&i| c[i] > 800), "{c:?}");
    let rng = SharedRng::new(0);
    assert_eq!(pick(s, &table, &[], None, &rng), None);
}

#[test]
fn a_request_without_a_key_falls_back_to_random() {
    assert_keyless_fallback(&mut RingHash::new());
    assert_keyless_fallback(&mut Maglev::new());
}

/// Simulates requests with skewed keys (one hot key takes half of them):
/// each pick adds a pending request, and completions keep about 200 in
/// flight. Returns the worst `pending / ceil(c × mean)` seen right after a
/// pick, where mean counts the pending requests including this one.
fn worst_overload(s: &mut dyn Strategy, c: f64) -> f64 {
    let n = 8;
    let mut table = Table::equal(n);
    update(s, &table);
    let routable = table.occupied();
    let rng = SharedRng::new(99);
    let sim = SharedRng::new(7);
    let mut in_flight: Vec<usize> = Vec::new();
    let mut worst: f64 = 0.0;
    for _ in 0..20_000 {
        let key = if sim.next_u64().is_multiple_of(2) {
            42
        } else {
            sim.next_u64()
        };
        let slot = pick(s, &table, &routable, Some(key), &rng).unwrap();
        table.ep(slot).pending += 1;
        in_flight.push(slot);
        let total: u32 = routable
            .iter()
            .map(|&i| table.slots[i].as_ref().unwrap().pending)
            .sum();
        let cap = (c * f64::from(total) / n as f64).ceil();
        worst = worst.max(f64::from(table.ep(slot).pending) / cap);
        while in_flight.len() > 200 {
            let i = (sim.next_u64() % in_flight.len() as u64) as usize;
            let done = in_flight.swap_remove(i);
            table.ep(done).pending -= 1;
        }
    }
    worst
}

#[test]
fn bounded_load_keeps_every_endpoint_within_c_times_the_mean() {
    for c in [1.0, 1.25, 2.0] {
        let mut ring = RingHashConfig::new()
            .hash_balance_factor(c)
            .build()
            .unwrap();
        let w = worst_overload(&mut ring, c);
        assert!(w <= 1.0, "ring, c = {c}: {w:.3} × the bound");
        let mut maglev = MaglevConfig::new().hash_balance_factor(c).build().unwrap();
        let w = worst_overload(&mut maglev, c);
        assert!(w <= 1.0, "maglev, c = {c}: {w:.3} × the bound");
    }
    // Without the bound, the hot key overloads its endpoint (the
    // simulation does stress the bound).
    assert!(worst_overload(&mut RingHash::new(), 1.25) > 2.0);
    assert!(worst_overload(&mut Maglev::new(), 1.25) > 2.0);
}

#[test]
fn bounded_load_keeps_affinity_while_under_the_bound() {
    // Idle endpoints: every key goes where it would go without the bound.
    let table = Table::equal(8);
    let mut plain = RingHash::new();
    let mut bounded = RingHashConfig::new()
        .hash_balance_factor(1.25)
        .build()
        .unwrap();
    update(&mut plain, &table);
    update(&mut bounded, &table);
    assert_eq!(
        owners(&mut plain, &table, &table.occupied()),
        owners(&mut bounded, &table, &table.occupied())
    );
}

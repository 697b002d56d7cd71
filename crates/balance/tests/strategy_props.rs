//! Property: for any table (1–64 slots, some free, weights 1–1000, any
//! loads) and any routable subset, empty included, every strategy returns
//! a routable slot, or `None` exactly when none is routable; no panic.

mod common;

use common::{Ep, Table, pick, update};
use proptest::prelude::*;
use rampart_balance::strategy::StrategyConfig;
use rampart_core::random::SharedRng;

fn strategies() -> Vec<StrategyConfig> {
    [
        r#"kind = "round_robin""#,
        r#"kind = "smooth_weighted_round_robin""#,
        r#"kind = "weighted_random""#,
        r#"kind = "least_request""#,
        "kind = \"least_request\"\nchoice_count = 5\nactive_request_bias = 0.5",
        r#"kind = "power_of_two_choices""#,
        "kind = \"power_of_two_choices\"\nload = \"pending\"",
        r#"kind = "ring_hash""#,
        "kind = \"ring_hash\"\nminimum_ring_size = 16\nmaximum_ring_size = 32\nhash_balance_factor = 1.0",
        r#"kind = "maglev""#,
        "kind = \"maglev\"\ntable_size = 31\nhash_balance_factor = 1.5",
    ]
    .iter()
    .map(|s| toml::from_str(s).expect("a valid strategy"))
    .collect()
}

/// (present, weight, effective share, pending, cost, routable) per slot.
type SlotSpec = (bool, u32, f64, u32, f64, bool);

fn table_and_routable(specs: &[SlotSpec]) -> (Table, Vec<usize>) {
    let mut table = Table::default();
    let mut routable = Vec::new();
    for (i, &(present, weight, share, pending, cost, r)) in specs.iter().enumerate() {
        if present {
            let mut e = Ep::new(format!("ep-{i}"), weight);
            e.effective_weight = f64::from(weight) * share;
            e.pending = pending;
            e.cost = cost;
            table.slots.push(Some(e));
            if r {
                routable.push(i);
            }
        } else {
            table.slots.push(None);
        }
    }
    (table, routable)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_strategy_picks_a_routable_slot_or_none_when_none_is(
        specs in prop::collection::vec(
            (any::<bool>(), 1u32..=1000, 0.01f64..=1.0, 0u32..50, 0.0f64..1e9, any::<bool>()),
            1..=64,
        ),
        changed in prop::collection::vec(
            (any::<bool>(), 1u32..=1000, 0.01f64..=1.0, 0u32..50, 0.0f64..1e9, any::<bool>()),
            1..=64,
        ),
        keys in prop::collection::vec(prop::option::of(any::<u64>()), 1..20),
        seed in any::<u64>(),
    ) {
        let (table, routable) = table_and_routable(&specs);
        let (table2, routable2) = table_and_routable(&changed);
        for cfg in strategies() {
            let mut s = cfg.build().unwrap();
            let rng = SharedRng::new(seed);
            // A table, then another (growing, shrinking, reusing slots).
            for (t, r) in [(&table, &routable), (&table2, &routable2), (&table, &routable)] {
                update(s.as_mut(), t);
                for &key in &keys {
                    let got = pick(s.as_mut(), t, r, key, &rng);
                    match got {
                        None => prop_assert!(r.is_empty(), "{}: None with {:?} routable", cfg.kind(), r),
                        Some(slot) => prop_assert!(
                            r.contains(&slot),
                            "{}: picked {} outside {:?}", cfg.kind(), slot, r
                        ),
                    }
                }
                // Every subset of the routable slots, empty included.
                for k in 0..=r.len().min(3) {
                    let sub = &r[..k];
                    let got = pick(s.as_mut(), t, sub, keys[0], &rng);
                    prop_assert_eq!(got.is_some(), !sub.is_empty(), "{}", cfg.kind());
                    if let Some(slot) = got {
                        prop_assert!(sub.contains(&slot));
                    }
                }
            }
        }
    }

    #[test]
    fn a_strategy_not_yet_updated_still_picks_a_routable_slot(
        specs in prop::collection::vec(
            (any::<bool>(), 1u32..=1000, 0.01f64..=1.0, 0u32..50, 0.0f64..1e9, any::<bool>()),
            1..=64,
        ),
        key in prop::option::of(any::<u64>()),
    ) {
        let (table, routable) = table_and_routable(&specs);
        for cfg in strategies() {
            let mut s = cfg.build().unwrap();
            let rng = SharedRng::new(1);
            let got = pick(s.as_mut(), &table, &routable, key, &rng);
            prop_assert_eq!(got.is_some(), !routable.is_empty(), "{}", cfg.kind());
            if let Some(slot) = got {
                prop_assert!(routable.contains(&slot), "{}", cfg.kind());
            }
        }
    }
}

//! Properties of the outlier detector over random configurations and
//! random streams of adds, removals, answers and timer ticks.

use std::time::Duration;

use proptest::prelude::*;
use rampart_balance::health::{OutlierConfig, OutlierDetector};
use rampart_core::Outcome;
use tokio::time::Instant;

#[derive(Debug, Clone)]
enum Op {
    Add(usize),
    Remove(usize),
    Record(usize, Outcome),
    /// Advance the clock by this many milliseconds, then evaluate if the
    /// detector's timer is due.
    Tick(u64),
}

const SLOTS: usize = 12;

fn op() -> impl Strategy<Value = Op> {
    let outcome = prop_oneof![
        3 => Just(Outcome::Failure),
        2 => Just(Outcome::Success),
        1 => Just(Outcome::Ignored),
    ];
    prop_oneof![
        1 => (0..SLOTS).prop_map(Op::Add),
        1 => (0..SLOTS).prop_map(Op::Remove),
        12 => ((0..SLOTS), outcome).prop_map(|(s, o)| Op::Record(s, o)),
        2 => (0u64..3_000).prop_map(Op::Tick),
    ]
}

/// The generated values the checks need back.
#[derive(Debug, Clone, Copy)]
struct Params {
    max_percent: usize,
    always_one: bool,
    streak: u32,
}

fn config() -> impl Strategy<Value = (OutlierConfig, Params)> {
    (
        (1u32..6, 0u32..=100, 0u32..=100, any::<bool>()),
        (1u32..6, 1u32..20, 0.0f64..3.0, 0u32..=100),
        (0u32..=100, 1u32..6, 1u32..20, 0u32..=100),
        (100u64..2_000, 1u64..5, 1u64..4, 0u64..1_000),
    )
        .prop_map(
            |(
                (streak, enf_streak, max_pct, one),
                (sr_hosts, sr_volume, factor, enf_sr),
                (fp_threshold, fp_hosts, fp_volume, enf_fp),
                (interval, base, cap, jitter),
            )| {
                let base = Duration::from_millis(interval * base);
                let params = Params {
                    max_percent: max_pct as usize,
                    always_one: one,
                    streak,
                };
                let config = OutlierConfig::new()
                    .consecutive_failures(streak)
                    .enforcing_consecutive_failures(enf_streak)
                    .max_ejection_percent(max_pct)
                    .always_eject_one_host(one)
                    .success_rate_minimum_hosts(sr_hosts)
                    .success_rate_request_volume(sr_volume)
                    .success_rate_stdev_factor(factor)
                    .enforcing_success_rate(enf_sr)
                    .failure_percentage_threshold(fp_threshold)
                    .failure_percentage_minimum_hosts(fp_hosts)
                    .failure_percentage_request_volume(fp_volume)
                    .enforcing_failure_percentage(enf_fp)
                    .interval(Duration::from_millis(interval))
                    .base_ejection_time(base)
                    .max_ejection_time(base * cap as u32)
                    .max_ejection_time_jitter(Duration::from_millis(jitter));
                (config, params)
            },
        )
}

fn check(od: &OutlierDetector, p: Params, now: Instant) {
    let ejected = (0..SLOTS).filter(|&s| od.is_ejected(s)).count();
    let live = (0..SLOTS).filter(|&s| od.health(s).is_some()).count();
    assert_eq!(ejected, od.ejected_count(), "the count matches the slots");
    assert_eq!(live, od.len());
    // The documented guard: floor(n × pct / 100), raised to 1 with
    // always_eject_one_host, never n (the pool is never emptied).
    let floor = live * p.max_percent / 100;
    let allowed = floor
        .max(usize::from(p.always_one))
        .min(live.saturating_sub(1));
    assert!(
        ejected <= allowed,
        "{ejected} ejected of {live}, {allowed} allowed"
    );
    assert_eq!(od.max_ejected(), allowed);
    assert!(live == 0 || ejected < live, "never all ejected");
    assert!(
        od.next_evaluation() > now,
        "the timer never asks for the past"
    );
    for slot in 0..SLOTS {
        if let Some(h) = od.health(slot) {
            assert_eq!(h.ejected_until.is_some(), h.ejection_reason.is_some());
            if let Some(until) = h.ejected_until {
                assert!(until > now, "an ejection that ran out was re-admitted");
            }
            if let Some(rate) = h.last_interval_success_rate {
                assert!((0.0..=100.0).contains(&rate));
            }
            assert!(h.consecutive_failures < p.streak);
            assert!(h.in_rotation_since <= now);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ejections_never_exceed_the_guard(
        (config, params) in config(),
        seed in any::<u64>(),
        initial in 0usize..=SLOTS,
        ops in proptest::collection::vec(op(), 0..400),
    ) {
        let mut now = Instant::now();
        let mut od = OutlierDetector::new(config, "prop", seed, now).unwrap();
        for slot in 0..initial {
            od.add(slot, now).unwrap();
        }
        check(&od, params, now);
        for op in ops {
            match op {
                Op::Add(slot) => {
                    let taken = od.health(slot).is_some();
                    prop_assert_eq!(od.add(slot, now).is_err(), taken);
                }
                Op::Remove(slot) => {
                    for back in od.remove(slot, now) {
                        prop_assert!(!od.is_ejected(back));
                    }
                }
                Op::Record(slot, outcome) => {
                    let was = od.is_ejected(slot);
                    let ejected = od.record(slot, outcome, now);
                    prop_assert!(!ejected || (outcome == Outcome::Failure && !was));
                    prop_assert_eq!(od.is_ejected(slot), was || ejected);
                }
                Op::Tick(ms) => {
                    now += Duration::from_millis(ms);
                    if od.next_evaluation() <= now {
                        let done = od.evaluate(now);
                        for slot in done.readmitted {
                            prop_assert!(!od.is_ejected(slot));
                        }
                        for e in done.ejected {
                            prop_assert!(od.is_ejected(e.slot));
                            prop_assert!(e.until > now);
                        }
                    }
                }
            }
            check(&od, params, now);
        }
    }
}

//! Outlier detection: ejection by each rule, re-admission, growing
//! ejection times, the max-ejection guard, metrics and bad input.

use std::time::Duration;

use rampart_balance::health::{
    EJECTED, EJECTIONS_OVERFLOW_TOTAL, EJECTIONS_TOTAL, EjectReason, HealthError, MAX_SLOT,
    OUTLIERS_DETECTED_TOTAL, OutlierConfig, OutlierDetector,
};
use rampart_core::Outcome::{Failure, Ignored, Success};
use rampart_core::testing::TestRecorder;
use tokio::time::{Instant, advance};

const SECOND: Duration = Duration::from_secs(1);

fn detector(config: OutlierConfig, hosts: usize, now: Instant) -> OutlierDetector {
    let mut od = OutlierDetector::new(config, "test", 1, now).unwrap();
    for slot in 0..hosts {
        od.add(slot, now).unwrap();
    }
    od
}

fn feed(od: &mut OutlierDetector, slot: usize, successes: u64, failures: u64, now: Instant) {
    for _ in 0..successes {
        od.record(slot, Success, now);
    }
    for _ in 0..failures {
        od.record(slot, Failure, now);
    }
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_eject_at_once_and_readmit_after_the_ejection_time() {
    let t0 = Instant::now();
    let mut od = detector(OutlierConfig::new(), 10, t0);
    for outcome in [Failure, Failure, Failure, Failure, Success] {
        assert!(!od.record(3, outcome, t0), "a success resets the count");
    }
    for outcome in [Failure, Failure, Failure, Failure, Ignored] {
        assert!(
            !od.record(3, outcome, t0),
            "ignored neither counts nor resets"
        );
    }
    assert_eq!(od.health(3).unwrap().consecutive_failures, 4);
    assert!(
        od.record(3, Failure, t0),
        "the fifth failure in a row ejects"
    );
    assert!(od.is_ejected(3));
    assert_eq!(od.ejected_count(), 1);
    let health = od.health(3).unwrap();
    assert_eq!(health.ejected_until, Some(t0 + 30 * SECOND));
    assert_eq!(
        health.ejection_reason,
        Some(EjectReason::ConsecutiveFailures)
    );
    assert_eq!(health.ejections, 1);
    assert_eq!(health.consecutive_failures, 0);

    // While ejected, late answers are not recorded.
    for _ in 0..10 {
        assert!(!od.record(3, Failure, t0));
    }
    assert_eq!(od.health(3).unwrap().consecutive_failures, 0);

    // The interval timer fires at 10 s and 20 s: still ejected.
    for _ in 0..2 {
        assert_eq!(od.next_evaluation(), Instant::now() + 10 * SECOND);
        advance(10 * SECOND).await;
        let done = od.evaluate(Instant::now());
        assert!(done.readmitted.is_empty() && done.ejected.is_empty());
        assert!(od.is_ejected(3));
    }
    // One nanosecond early is too early.
    let almost = t0 + 30 * SECOND - Duration::from_nanos(1);
    assert!(od.evaluate(almost).readmitted.is_empty());
    assert_eq!(od.next_evaluation(), t0 + 30 * SECOND);
    advance(10 * SECOND).await;
    let now = Instant::now();
    assert_eq!(od.evaluate(now).readmitted, [3]);
    assert!(!od.is_ejected(3));
    assert_eq!(od.ejected_count(), 0);
    assert_eq!(od.health(3).unwrap().in_rotation_since, now);
    assert_eq!(od.health(0).unwrap().in_rotation_since, t0);
}

#[tokio::test(start_paused = true)]
async fn ejection_times_grow_to_the_cap_then_decay_while_healthy() {
    let config = OutlierConfig::new()
        .consecutive_failures(1)
        .interval(SECOND)
        .base_ejection_time(10 * SECOND)
        .max_ejection_time(35 * SECOND)
        .max_ejection_percent(50);
    let mut od = detector(config, 2, Instant::now());
    let mut lengths = Vec::new();
    for _ in 0..5 {
        let now = Instant::now();
        assert!(od.record(0, Failure, now));
        let until = od.health(0).unwrap().ejected_until.unwrap();
        lengths.push((until - now).as_secs());
        // Drive the timer to the re-admission.
        while od.is_ejected(0) {
            let next = od.next_evaluation();
            assert!(next > Instant::now(), "the timer never asks for the past");
            advance(next - Instant::now()).await;
            od.evaluate(Instant::now());
        }
    }
    assert_eq!(lengths, [10, 20, 30, 35, 35]);
    assert_eq!(od.health(0).unwrap().multiplier, 4);
    assert_eq!(od.health(0).unwrap().ejections, 5);

    // Each interval spent in rotation after the re-admission decays the
    // multiplier by one.
    let mut multipliers = Vec::new();
    for _ in 0..3 {
        advance(SECOND).await;
        od.evaluate(Instant::now());
        multipliers.push(od.health(0).unwrap().multiplier);
    }
    assert_eq!(multipliers, [3, 2, 1]);
    let now = Instant::now();
    assert!(od.record(0, Failure, now));
    assert_eq!(
        od.health(0).unwrap().ejected_until,
        Some(now + 20 * SECOND),
        "multiplier 1 + 1: twice the base"
    );
}

#[test]
fn jitter_stays_within_its_bounds_and_repeats_with_the_seed() {
    let config = OutlierConfig::new()
        .consecutive_failures(1)
        .base_ejection_time(10 * SECOND)
        .max_ejection_time(10 * SECOND)
        .max_ejection_time_jitter(5 * SECOND)
        .max_ejection_percent(100);
    let t0 = Instant::now();
    let lengths = |seed: u64| -> Vec<Duration> {
        let mut od = OutlierDetector::new(config.clone(), "", seed, t0).unwrap();
        for slot in 0..=50 {
            od.add(slot, t0).unwrap();
        }
        (0..50)
            .map(|slot| {
                assert!(od.record(slot, Failure, t0));
                od.health(slot).unwrap().ejected_until.unwrap() - t0
            })
            .collect()
    };
    let a = lengths(7);
    assert!(a.iter().all(|d| (10 * SECOND..=15 * SECOND).contains(d)));
    assert!(a.iter().any(|d| *d < 11 * SECOND) && a.iter().any(|d| *d > 14 * SECOND));
    assert_eq!(a, lengths(7));
    assert_ne!(a, lengths(8));
}

fn ten_hosts_one_bad(od: &mut OutlierDetector, requests: u64, now: Instant) {
    for slot in 0..9 {
        // 99 % and 100 % successes, interleaved so no failure streak forms.
        for i in 0..requests {
            let fail = slot % 2 == 0 && i % 100 == 50;
            od.record(slot, if fail { Failure } else { Success }, now);
        }
    }
    for i in 0..requests {
        od.record(9, if i % 2 == 0 { Failure } else { Success }, now);
    }
}

#[tokio::test(start_paused = true)]
async fn success_rate_ejects_the_one_bad_host_of_ten() {
    let recorder = TestRecorder::default();
    let t0 = Instant::now();
    let mut od = metrics::with_local_recorder(&recorder, || detector(OutlierConfig::new(), 10, t0));
    ten_hosts_one_bad(&mut od, 100, t0);
    assert_eq!(od.ejected_count(), 0, "nothing before the interval ends");
    advance(10 * SECOND).await;
    let now = Instant::now();
    let done = od.evaluate(now);
    assert_eq!(done.ejected.len(), 1, "{done:?}");
    assert_eq!(done.ejected[0].slot, 9);
    assert_eq!(done.ejected[0].reason, EjectReason::SuccessRate);
    assert_eq!(done.ejected[0].until, now + 30 * SECOND);
    assert!(od.is_ejected(9));
    assert_eq!(od.health(0).unwrap().last_interval_success_rate, Some(99.0));
    assert_eq!(od.health(9).unwrap().last_interval_success_rate, Some(50.0));
    assert_eq!(od.health(9).unwrap().last_interval_requests, 100);

    let labels = [("name", "test"), ("reason", "success_rate")];
    assert_eq!(recorder.get(EJECTIONS_TOTAL, &labels).counter(), 1);
    assert_eq!(recorder.get(OUTLIERS_DETECTED_TOTAL, &labels).counter(), 1);
    assert_eq!(recorder.get(EJECTED, &[("name", "test")]).gauge(), 1.0);
    let by_streak = [("name", "test"), ("reason", "consecutive_failures")];
    assert_eq!(recorder.get(EJECTIONS_TOTAL, &by_streak).counter(), 0);

    // The next interval starts from zero: the good hosts alone eject no one.
    advance(10 * SECOND).await;
    for slot in 0..9 {
        feed(&mut od, slot, 100, 0, Instant::now());
    }
    assert!(od.evaluate(Instant::now()).ejected.is_empty());
    advance(20 * SECOND).await;
    assert_eq!(od.evaluate(Instant::now()).readmitted, [9]);
    assert_eq!(recorder.get(EJECTED, &[("name", "test")]).gauge(), 0.0);
}

#[test]
fn no_success_rate_ejection_below_the_request_volume_or_the_minimum_hosts() {
    let t0 = Instant::now();
    let t1 = t0 + 10 * SECOND;

    let mut od = detector(OutlierConfig::new(), 10, t0);
    ten_hosts_one_bad(&mut od, 99, t0);
    assert!(
        od.evaluate(t1).ejected.is_empty(),
        "99 < request volume 100"
    );

    // Four judged hosts of the five needed (the others sent nothing).
    let mut od = detector(OutlierConfig::new(), 10, t0);
    for slot in 0..3 {
        feed(&mut od, slot, 100, 0, t0);
    }
    for i in 0..100 {
        od.record(3, if i % 2 == 0 { Failure } else { Success }, t0);
    }
    assert!(od.evaluate(t1).ejected.is_empty());
    assert_eq!(od.health(3).unwrap().last_interval_success_rate, Some(50.0));

    // With a minimum of four hosts the bad one is judged; one outlier among
    // n rates is at most sqrt(n − 1) deviations below the mean (1.73 for
    // four), so it takes a factor below that to eject it.
    let config = OutlierConfig::new()
        .success_rate_minimum_hosts(4)
        .max_ejection_percent(25);
    let mut od = detector(config.clone(), 4, t0);
    for slot in 0..3 {
        feed(&mut od, slot, 100, 0, t0);
    }
    for i in 0..100 {
        od.record(3, if i % 2 == 0 { Failure } else { Success }, t0);
    }
    assert!(od.evaluate(t1).ejected.is_empty());
    let config = config.success_rate_stdev_factor(1.7);
    let mut od = detector(config, 4, t0);
    for slot in 0..3 {
        feed(&mut od, slot, 100, 0, t0);
    }
    for i in 0..100 {
        od.record(3, if i % 2 == 0 { Failure } else { Success }, t0);
    }
    let done = od.evaluate(t1);
    assert_eq!(done.ejected.len(), 1);
    assert_eq!(done.ejected[0].slot, 3);
}

fn streaky(od: &mut OutlierDetector, slot: usize, failures_in_100: u64, now: Instant) {
    for i in 0..100 {
        let outcome = if i < failures_in_100 {
            Failure
        } else {
            Success
        };
        od.record(slot, outcome, now);
    }
}

#[test]
fn failure_percentage_ejects_at_the_threshold_and_can_detect_only() {
    let recorder = TestRecorder::default();
    let config = OutlierConfig::new()
        .consecutive_failures(1000)
        .enforcing_success_rate(0)
        .max_ejection_percent(100);
    let t0 = Instant::now();
    let t1 = t0 + 10 * SECOND;
    let mut od = metrics::with_local_recorder(&recorder, || detector(config.clone(), 6, t0));
    for slot in 0..4 {
        streaky(&mut od, slot, 0, t0);
    }
    streaky(&mut od, 4, 85, t0);
    streaky(&mut od, 5, 84, t0);
    let done = od.evaluate(t1);
    let ejected: Vec<_> = done.ejected.iter().map(|e| (e.slot, e.reason)).collect();
    assert_eq!(ejected, [(4, EjectReason::FailurePercentage)]);
    let fp = [("name", "test"), ("reason", "failure_percentage")];
    assert_eq!(recorder.get(EJECTIONS_TOTAL, &fp).counter(), 1);

    // Detection only.
    let mut od = detector(config.enforcing_failure_percentage(0), 6, t0);
    for slot in 0..5 {
        streaky(&mut od, slot, 0, t0);
    }
    streaky(&mut od, 5, 100, t0);
    assert!(od.evaluate(t1).ejected.is_empty());

    // Below the volume (50 by default): not judged.
    let config = OutlierConfig::new()
        .consecutive_failures(1000)
        .enforcing_success_rate(0);
    let mut od = detector(config, 5, t0);
    for slot in 0..5 {
        for _ in 0..49 {
            od.record(slot, if slot == 0 { Failure } else { Success }, t0);
        }
    }
    assert!(od.evaluate(t1).ejected.is_empty());
}

#[test]
fn success_rate_can_detect_without_ejecting() {
    let recorder = TestRecorder::default();
    let t0 = Instant::now();
    let config = OutlierConfig::new().enforcing_success_rate(0);
    let mut od = metrics::with_local_recorder(&recorder, || detector(config, 10, t0));
    ten_hosts_one_bad(&mut od, 100, t0);
    assert!(od.evaluate(t0 + 10 * SECOND).ejected.is_empty());
    let sr = [("name", "test"), ("reason", "success_rate")];
    assert_eq!(recorder.get(OUTLIERS_DETECTED_TOTAL, &sr).counter(), 1);
    assert_eq!(recorder.get(EJECTIONS_TOTAL, &sr).counter(), 0);
}

#[test]
fn enforcement_probability_is_honoured_over_many_draws() {
    let config = OutlierConfig::new()
        .consecutive_failures(1)
        .enforcing_consecutive_failures(30)
        .max_ejection_percent(100);
    let t0 = Instant::now();
    let mut od = detector(config, 10_001, t0);
    let ejected = (0..10_000).filter(|&s| od.record(s, Failure, t0)).count();
    assert!((2_700..=3_300).contains(&ejected), "{ejected}");
}

#[test]
fn max_ejection_percent_refuses_ejections_past_it() {
    let recorder = TestRecorder::default();
    let t0 = Instant::now();
    let config = OutlierConfig::new().consecutive_failures(1);
    let mut od = metrics::with_local_recorder(&recorder, || detector(config.clone(), 10, t0));
    assert_eq!(od.max_ejected(), 1);
    assert!(od.record(0, Failure, t0));
    assert!(!od.record(1, Failure, t0), "10 % of 10 is 1");
    assert!(!od.is_ejected(1));
    let streak = [("name", "test"), ("reason", "consecutive_failures")];
    assert_eq!(recorder.get(EJECTIONS_OVERFLOW_TOTAL, &streak).counter(), 1);
    assert_eq!(recorder.get(OUTLIERS_DETECTED_TOTAL, &streak).counter(), 2);

    // 10 % of 5 is 0: one ejection only with always_eject_one_host.
    let mut od = detector(config.clone(), 5, t0);
    assert!(od.record(0, Failure, t0));
    assert!(!od.record(1, Failure, t0));
    let mut od = detector(config.clone().always_eject_one_host(false), 5, t0);
    assert!(!od.record(0, Failure, t0));

    // 100 % still keeps the last endpoint in rotation.
    let mut od = detector(config.max_ejection_percent(100), 3, t0);
    assert!(od.record(0, Failure, t0));
    assert!(od.record(1, Failure, t0));
    assert!(!od.record(2, Failure, t0));
    assert_eq!(od.ejected_count(), 2);
}

#[test]
fn max_ejected_follows_the_documented_rule() {
    let cfg = OutlierConfig::new();
    let table = [
        (0, 0),
        (1, 0),
        (2, 1),
        (9, 1),
        (10, 1),
        (19, 1),
        (20, 2),
        (25, 2),
    ];
    for (n, max) in table {
        assert_eq!(cfg.max_ejected(n), max, "10 % of {n}");
    }
    let envoy = cfg.clone().always_eject_one_host(false);
    assert_eq!(envoy.max_ejected(9), 0);
    assert_eq!(envoy.max_ejected(10), 1);
    let all = cfg.max_ejection_percent(100);
    assert_eq!(all.max_ejected(1), 0);
    assert_eq!(all.max_ejected(4), 3);
    assert_eq!(
        OutlierConfig::new()
            .max_ejection_percent(0)
            .always_eject_one_host(false)
            .max_ejected(100),
        0
    );
}

#[test]
fn removing_endpoints_readmits_the_ejections_that_end_first_to_keep_the_cap() {
    let t0 = Instant::now();
    let config = OutlierConfig::new()
        .consecutive_failures(1)
        .max_ejection_percent(50);
    let mut od = detector(config, 4, t0);
    assert!(od.record(0, Failure, t0 + SECOND)); // ends at 31 s
    assert!(od.record(1, Failure, t0)); // ends at 30 s
    assert_eq!(od.ejected_count(), 2);
    // 3 endpoints: floor(3 × 50 / 100) = 1 < 2 ejected, so the ejection
    // that would end first comes back.
    let t5 = t0 + 5 * SECOND;
    assert_eq!(od.remove(3, t5), [1]);
    assert_eq!(od.ejected_count(), 1);
    assert!(!od.is_ejected(1) && od.is_ejected(0));
    assert_eq!(od.health(1).unwrap().in_rotation_since, t5);
    // Removing the ejected one itself frees its place.
    assert!(od.remove(0, t5).is_empty());
    assert_eq!((od.len(), od.ejected_count()), (2, 0));
    // The last endpoint is never left ejected.
    assert!(od.record(1, Failure, t5));
    assert_eq!(od.remove(2, t5), [1]);
    assert_eq!((od.len(), od.ejected_count()), (1, 0));
    assert!(od.remove(7, t5).is_empty(), "an empty slot is a no-op");
}

#[test]
fn zero_and_one_endpoint_never_divide_by_zero_or_eject_the_last() {
    let t0 = Instant::now();
    let mut od = detector(OutlierConfig::new().consecutive_failures(1), 0, t0);
    assert!(od.is_empty());
    assert_eq!(od.next_evaluation(), t0 + 10 * SECOND);
    assert_eq!(od.evaluate(t0 + 10 * SECOND), Default::default());
    assert!(!od.record(0, Failure, t0), "an empty slot records nothing");
    assert_eq!(od.health(0), None);

    let config = OutlierConfig::new()
        .consecutive_failures(1)
        .success_rate_minimum_hosts(1)
        .failure_percentage_minimum_hosts(1)
        .success_rate_request_volume(1)
        .failure_percentage_request_volume(1)
        .max_ejection_percent(100);
    let mut od = detector(config, 1, t0);
    for _ in 0..100 {
        assert!(!od.record(0, Failure, t0));
    }
    let done = od.evaluate(t0 + 10 * SECOND);
    assert!(done.ejected.is_empty());
    assert_eq!(od.health(0).unwrap().last_interval_success_rate, Some(0.0));
}

#[test]
fn slots_are_checked() {
    let t0 = Instant::now();
    let mut od = detector(OutlierConfig::new(), 2, t0);
    assert_eq!(od.add(1, t0), Err(HealthError::SlotTaken { slot: 1 }));
    let err = od.add(MAX_SLOT + 1, t0).unwrap_err();
    assert_eq!(err, HealthError::SlotOutOfRange { slot: MAX_SLOT + 1 });
    assert_eq!(
        err.to_string(),
        format!("slot {} is above the largest slot {MAX_SLOT}", MAX_SLOT + 1)
    );
    od.add(5, t0).unwrap();
    assert_eq!(od.len(), 3);
    assert!(!od.is_ejected(4) && od.health(4).is_none());
    // A removed slot can be reused, starting afresh.
    let od_cfg = OutlierConfig::new().consecutive_failures(1);
    let mut od = detector(od_cfg, 2, t0);
    assert!(od.record(0, Failure, t0));
    od.remove(0, t0);
    od.add(0, t0 + SECOND).unwrap();
    let fresh = od.health(0).unwrap();
    assert_eq!((fresh.ejections, fresh.multiplier), (0, 0));
    assert_eq!(fresh.ejected_until, None);
}

#[test]
fn config_loads_from_toml_and_names_the_refused_field() {
    let cfg: OutlierConfig = toml::from_str("").unwrap();
    assert_eq!(cfg, OutlierConfig::default());
    cfg.validate().unwrap();
    let full: OutlierConfig = toml::from_str(
        r#"
        consecutive_failures = 7
        enforcing_consecutive_failures = 90
        interval = "5s"
        base_ejection_time = "10s"
        max_ejection_time = "1m"
        max_ejection_time_jitter = "500ms"
        max_ejection_percent = 20
        always_eject_one_host = false
        success_rate_minimum_hosts = 3
        success_rate_request_volume = 10
        success_rate_stdev_factor = 1.0
        enforcing_success_rate = 50
        failure_percentage_threshold = 60
        failure_percentage_minimum_hosts = 2
        failure_percentage_request_volume = 20
        enforcing_failure_percentage = 0
        "#,
    )
    .unwrap();
    full.validate().unwrap();
    assert_eq!(full.interval_duration(), 5 * SECOND);

    let refused = [
        ("consecutive_failures = 0", "consecutive_failures"),
        (
            "enforcing_consecutive_failures = 101",
            "enforcing_consecutive_failures",
        ),
        ("interval = \"0s\"", "interval"),
        ("base_ejection_time = 0", "base_ejection_time"),
        ("max_ejection_time = \"10s\"", "max_ejection_time"),
        ("max_ejection_time_jitter = \"9000h\"", "max_ejection_time"),
        ("max_ejection_percent = 101", "max_ejection_percent"),
        (
            "success_rate_minimum_hosts = 0",
            "success_rate_minimum_hosts",
        ),
        (
            "success_rate_request_volume = 0",
            "success_rate_request_volume",
        ),
        (
            "success_rate_stdev_factor = -1.0",
            "success_rate_stdev_factor",
        ),
        (
            "success_rate_stdev_factor = nan",
            "success_rate_stdev_factor",
        ),
        ("enforcing_success_rate = 200", "enforcing_success_rate"),
        (
            "failure_percentage_threshold = 101",
            "failure_percentage_threshold",
        ),
        (
            "failure_percentage_minimum_hosts = 0",
            "failure_percentage_minimum_hosts",
        ),
        (
            "failure_percentage_request_volume = 0",
            "failure_percentage_request_volume",
        ),
        (
            "enforcing_failure_percentage = 101",
            "enforcing_failure_percentage",
        ),
    ];
    for (toml_text, field) in refused {
        let cfg: OutlierConfig = toml::from_str(toml_text).unwrap();
        assert_eq!(cfg.validate().unwrap_err().field(), field, "{toml_text}");
        let err = OutlierDetector::new(cfg, "", 0, Instant::now()).unwrap_err();
        assert_eq!(err.field(), field);
    }
    assert!(toml::from_str::<OutlierConfig>("consecutive_5xx = 5").is_err());
    assert!(toml::from_str::<OutlierConfig>("interval = \"10 parsecs\"").is_err());
}

#[test]
fn outcomes_of_every_kind_are_accepted_for_every_slot_state() {
    // Ignored on an ejected or removed endpoint: still nothing.
    let t0 = Instant::now();
    let mut od = detector(OutlierConfig::new().consecutive_failures(1), 3, t0);
    assert!(od.record(0, Failure, t0));
    od.remove(1, t0);
    for slot in 0..4 {
        for outcome in [Success, Failure, Ignored] {
            let _: bool = od.record(slot, outcome, t0);
        }
    }
    assert_eq!(od.ejected_count(), 1);
    assert_eq!(od.len(), 2);
}

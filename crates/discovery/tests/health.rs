//! Active health checks on paused time with a scripted probe: thresholds,
//! jitter, the instance lifecycle, and what the registry and its watchers
//! see.

mod health_common;

use std::sync::Arc;
use std::time::Duration;

use health_common::{ScriptedProbe, TestRegistry};
use rampart_discovery::health::{
    CheckKind, HealthCheck, HealthChecker, HealthCheckerHandle, HealthError, HttpCheck,
    StatusRange, TcpCheck,
};
use rampart_discovery::registry::{
    EventKind, HealthStatus, Instance, LeaseId, Registry, ServiceName, Watch,
};
use tokio::time::{Instant, sleep, sleep_until};

const A: &str = "10.0.0.1:8080";
const B: &str = "10.0.0.2:8080";

fn orders() -> ServiceName {
    "shop/orders".parse().unwrap()
}

fn instance(id: &str, address: &str) -> Instance {
    Instance::new(id, "shop/orders", address, 8080).unwrap()
}

/// Probes every second exactly (no jitter), healthy after 2 passes,
/// unhealthy after 3 failures.
fn check() -> HealthCheck {
    HealthCheck::new()
        .interval(Duration::from_secs(1))
        .jitter(0.0)
        .healthy_threshold(2)
        .unhealthy_threshold(3)
}

async fn spawn(
    registry: &Arc<TestRegistry>,
    probe: &Arc<ScriptedProbe>,
    check: HealthCheck,
) -> HealthCheckerHandle {
    HealthChecker::new(registry.clone(), orders(), check)
        .name("test")
        .probe(probe.clone())
        .spawn()
        .await
        .unwrap()
}

/// Registers `instance` for an hour.
async fn register(registry: &TestRegistry, instance: Instance) -> LeaseId {
    registry
        .register(instance, Duration::from_secs(3600))
        .await
        .unwrap()
}

/// A registry holding instance `a` (on [`A`]), whose probes fail, and
/// the time now.
async fn failing_a() -> (Arc<TestRegistry>, Arc<ScriptedProbe>, Instant) {
    let registry = TestRegistry::new();
    register(&registry, instance("a", "10.0.0.1")).await;
    let probe = ScriptedProbe::new();
    probe.set(A, false);
    (registry, probe, Instant::now())
}

async fn registered_health(registry: &TestRegistry, id: &str) -> HealthStatus {
    let found = registry.discover(&orders()).await.unwrap();
    found
        .instances
        .iter()
        .find(|i| i.id() == id)
        .expect("registered")
        .health()
}

/// The health statuses of the `Update` events queued on `watch`.
fn updates(watch: &mut Watch) -> Vec<HealthStatus> {
    std::iter::from_fn(|| watch.try_next().map(Result::unwrap))
        .filter(|e| e.kind == EventKind::Update)
        .map(|e| e.instance.health())
        .collect()
}

/// Sleeps until `secs` after `start` (probes run at whole seconds).
async fn at(start: Instant, secs: f64) {
    sleep_until(start + Duration::from_secs_f64(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn thresholds_flip_after_n_in_a_row_and_a_success_resets_the_run() {
    let registry = TestRegistry::new();
    register(&registry, instance("a", "10.0.0.1")).await;
    let mut watch = registry.watch(&orders()).await.unwrap();
    let _ = watch.try_next(); // the initial insert
    let probe = ScriptedProbe::new();
    probe.set(A, false);
    let start = Instant::now();
    let checker = spawn(&registry, &probe, check()).await;

    // probes at 0 and 1 fail: two of three
    at(start, 1.5).await;
    let h = checker.instance("a").unwrap();
    assert_eq!(
        (h.status, h.consecutive_failures, h.checks),
        (HealthStatus::Unknown, 2, 2)
    );
    assert_eq!(
        registered_health(&registry, "a").await,
        HealthStatus::Healthy
    );

    // one pass at 2 resets the run
    probe.set(A, true);
    at(start, 2.5).await;
    assert_eq!(checker.instance("a").unwrap().consecutive_failures, 0);

    // failures at 3 and 4 do not flip it; the one at 5 does
    probe.set(A, false);
    at(start, 4.5).await;
    assert_eq!(
        registered_health(&registry, "a").await,
        HealthStatus::Healthy
    );
    assert!(registry.set_health_calls().is_empty());
    at(start, 5.5).await;
    let h = checker.instance("a").unwrap();
    assert_eq!(
        (h.status, h.consecutive_failures, h.transitions),
        (HealthStatus::Unhealthy, 3, 1)
    );
    assert_eq!(
        h.last_error.as_deref(),
        Some("health probe failed: scripted failure")
    );
    assert_eq!(
        registered_health(&registry, "a").await,
        HealthStatus::Unhealthy
    );
    assert_eq!(updates(&mut watch), [HealthStatus::Unhealthy]);

    // more failures change nothing: set_health was called once
    at(start, 8.5).await;
    assert_eq!(
        registry.set_health_calls(),
        [("a".to_owned(), HealthStatus::Unhealthy)]
    );

    // two passes bring it back (one is not enough)
    probe.set(A, true);
    at(start, 9.5).await;
    assert_eq!(checker.status("a"), Some(HealthStatus::Unhealthy));
    at(start, 10.5).await;
    assert_eq!(checker.status("a"), Some(HealthStatus::Healthy));
    assert_eq!(
        registered_health(&registry, "a").await,
        HealthStatus::Healthy
    );
    assert_eq!(updates(&mut watch), [HealthStatus::Healthy]);
    assert_eq!(
        registry.set_health_calls(),
        [
            ("a".to_owned(), HealthStatus::Unhealthy),
            ("a".to_owned(), HealthStatus::Healthy)
        ]
    );
    let h = checker.instance("a").unwrap();
    assert_eq!((h.checks, h.failures, h.transitions), (11, 8, 2));
    checker.stop();
}

#[tokio::test(start_paused = true)]
async fn a_new_instance_is_unknown_until_the_first_threshold() {
    let registry = TestRegistry::new();
    register(
        &registry,
        instance("a", "10.0.0.1").with_health(HealthStatus::Unknown),
    )
    .await;
    let probe = ScriptedProbe::new();
    let start = Instant::now();
    let checker = spawn(&registry, &probe, check()).await;
    at(start, 0.5).await;
    assert_eq!(checker.status("a"), Some(HealthStatus::Unknown));
    assert_eq!(
        registered_health(&registry, "a").await,
        HealthStatus::Unknown
    );
    assert!(registry.set_health_calls().is_empty());
    at(start, 1.5).await;
    assert_eq!(checker.status("a"), Some(HealthStatus::Healthy));
    assert_eq!(
        registered_health(&registry, "a").await,
        HealthStatus::Healthy
    );
    assert_eq!(
        registry.set_health_calls(),
        [("a".to_owned(), HealthStatus::Healthy)]
    );
    checker.stop();
}

#[tokio::test(start_paused = true)]
async fn instances_registered_later_are_checked_and_a_removed_one_stops() {
    let registry = TestRegistry::new();
    let probe = ScriptedProbe::new();
    let start = Instant::now();
    let checker = spawn(&registry, &probe, check()).await;
    assert!(checker.instances().is_empty());

    let lease_a = register(&registry, instance("a", "10.0.0.1")).await;
    register(&registry, instance("b", "10.0.0.2")).await;
    at(start, 2.5).await;
    assert_eq!(probe.count(A), 3);
    assert_eq!(probe.count(B), 3);
    let ids: Vec<_> = checker.instances().into_iter().map(|h| h.id).collect();
    assert_eq!(ids, ["a", "b"]);

    registry.deregister(lease_a).await.unwrap();
    at(start, 10.5).await;
    assert_eq!(probe.count(A), 3, "the removed instance's task stopped");
    assert_eq!(probe.count(B), 11);
    assert!(checker.instance("a").is_none());

    checker.stop();
    at(start, 20.5).await;
    assert_eq!(probe.count(B), 11, "stop ends every task");
    assert!(checker.is_stopped());
    assert!(checker.instances().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_update_of_the_address_retargets_the_check() {
    let (registry, probe, start) = failing_a().await;
    let checker = spawn(&registry, &probe, check()).await;
    at(start, 2.5).await;
    assert_eq!(checker.status("a"), Some(HealthStatus::Unhealthy));

    // the same id registers again on another address (as Healthy)
    register(&registry, instance("a", "10.0.0.2")).await;
    at(start, 2.6).await;
    let h = checker.instance("a").unwrap();
    assert_eq!((h.authority.as_str(), h.status), (B, HealthStatus::Unknown));
    at(start, 6.0).await;
    assert_eq!(probe.count(A), 3, "the old address is no longer probed");
    assert!(probe.count(B) >= 2);
    assert_eq!(checker.status("a"), Some(HealthStatus::Healthy));
    assert_eq!(
        registered_health(&registry, "a").await,
        HealthStatus::Healthy
    );
    checker.stop();
}

#[tokio::test(start_paused = true)]
async fn a_re_registration_that_overwrites_the_verdict_is_corrected() {
    let (registry, probe, start) = failing_a().await;
    let checker = spawn(&registry, &probe, check()).await;
    at(start, 2.5).await;
    assert_eq!(
        registered_health(&registry, "a").await,
        HealthStatus::Unhealthy
    );

    // same address, registered again as Healthy (a restart of its owner)
    register(&registry, instance("a", "10.0.0.1")).await;
    at(start, 2.6).await;
    assert_eq!(
        registered_health(&registry, "a").await,
        HealthStatus::Unhealthy
    );
    assert_eq!(registry.set_health_calls().len(), 2);
    checker.stop();
}

#[tokio::test(start_paused = true)]
async fn a_failed_set_health_is_retried_after_the_next_probe() {
    let registry = TestRegistry::new();
    register(&registry, instance("a", "10.0.0.1")).await;
    let probe = ScriptedProbe::new();
    probe.set(A, false);
    registry.set_down(true);
    let start = Instant::now();
    let checker = spawn(&registry, &probe, check()).await;
    at(start, 3.5).await;
    assert_eq!(checker.status("a"), Some(HealthStatus::Unhealthy));
    assert_eq!(
        registered_health(&registry, "a").await,
        HealthStatus::Healthy
    );
    registry.set_down(false);
    at(start, 4.5).await;
    assert_eq!(
        registered_health(&registry, "a").await,
        HealthStatus::Unhealthy
    );
    assert_eq!(
        registry.set_health_calls(),
        [("a".to_owned(), HealthStatus::Unhealthy)]
    );
    // one attempt failed at 2 s and one at 3 s before the one that reached it
    let attempts = registry.calls().len();
    assert_eq!(
        attempts,
        1 + 3,
        "one register and three set_health attempts"
    );
    checker.stop();
}

/// The gaps between the probes of one instance, and the first probe's
/// offset, with `seed`.
async fn jittered_times(seed: u64) -> (Duration, Vec<Duration>) {
    let registry = TestRegistry::new();
    register(&registry, instance("a", "10.0.0.1")).await;
    let probe = ScriptedProbe::new();
    let start = Instant::now();
    let check = check()
        .interval(Duration::from_secs(10))
        .jitter(0.2)
        .seed(seed);
    let checker = spawn(&registry, &probe, check).await;
    sleep(Duration::from_secs(300)).await;
    checker.stop();
    let times = probe.times(A);
    let gaps = times.windows(2).map(|w| w[1] - w[0]).collect();
    (times[0] - start, gaps)
}

#[tokio::test(start_paused = true)]
async fn jitter_stays_within_the_fraction_and_repeats_with_a_seed() {
    let (first, gaps) = jittered_times(7).await;
    assert!(
        first <= Duration::from_millis(2_001),
        "first probe at {first:?}"
    );
    assert!(gaps.len() >= 20, "{} probes", gaps.len());
    // tokio's timer rounds up to the millisecond
    for g in &gaps {
        assert!(
            *g >= Duration::from_secs(8) && *g <= Duration::from_millis(12_001),
            "gap {g:?} outside 10 s ± 20 %"
        );
    }
    let min = gaps.iter().min().unwrap();
    let max = gaps.iter().max().unwrap();
    assert!(
        *max - *min > Duration::from_secs(1),
        "jitter spreads the gaps: {min:?}..{max:?}"
    );
    assert_eq!(
        jittered_times(7).await,
        (first, gaps.clone()),
        "same seed, same gaps"
    );
    assert_ne!(jittered_times(8).await.1, gaps, "another seed, other gaps");
}

#[tokio::test]
async fn an_invalid_check_is_refused_naming_the_field() {
    let registry = TestRegistry::new();
    for (check, field) in [
        (check().interval(Duration::ZERO), "interval"),
        (check().jitter(1.0), "jitter"),
        (check().jitter(-0.1), "jitter"),
        (check().healthy_threshold(0), "healthy_threshold"),
        (check().unhealthy_threshold(0), "unhealthy_threshold"),
        (
            check().kind(CheckKind::Tcp(TcpCheck::new().timeout(Duration::ZERO))),
            "timeout",
        ),
        (
            check().kind(CheckKind::Http(HttpCheck::new().path("healthz"))),
            "path",
        ),
        (
            check().kind(CheckKind::Http(HttpCheck::new().path("/a b"))),
            "path",
        ),
        (
            check().kind(CheckKind::Http(HttpCheck::new().expected_statuses(vec![]))),
            "expected_statuses",
        ),
        (
            check().kind(CheckKind::Http(
                HttpCheck::new().expected_statuses(vec![StatusRange::new(299, 200)]),
            )),
            "expected_statuses",
        ),
        (
            check().kind(CheckKind::Http(
                HttpCheck::new().expected_statuses(vec![StatusRange::single(600)]),
            )),
            "expected_statuses",
        ),
        (
            check().kind(CheckKind::Http(HttpCheck::new().host("bad\nhost"))),
            "host",
        ),
    ] {
        let err = HealthChecker::new(registry.clone(), orders(), check)
            .spawn()
            .await
            .unwrap_err();
        match err {
            HealthError::Config(e) => assert_eq!(e.field(), field, "{e}"),
            other => panic!("expected a config error for {field}, got {other}"),
        }
    }
}

#[test]
fn checks_decode_from_toml_and_refuse_unknown_keys() {
    let check: HealthCheck = toml::from_str(
        r#"
        interval = "2s"
        unhealthy_threshold = 5
        [kind.tcp]
        timeout = 250
        "#,
    )
    .unwrap();
    assert_eq!(
        check,
        HealthCheck::new()
            .interval(Duration::from_secs(2))
            .unhealthy_threshold(5)
            .kind(CheckKind::Tcp(
                TcpCheck::new().timeout(Duration::from_millis(250))
            ))
    );
    assert_eq!(check.probe_timeout(), Duration::from_millis(250));

    let h: HttpCheck = toml::from_str("expected_statuses = [\"200-204\", 304]").unwrap();
    assert!(h.expects(200) && h.expects(204) && h.expects(304));
    assert!(!h.expects(205) && !h.expects(199) && !h.expects(503));
    assert!(HttpCheck::new().expects(299) && !HttpCheck::new().expects(302));

    for bad in [
        "intervall = \"1s\"",
        "[kind.http]\npaht = \"/\"",
        "[kind.udp]\ntimeout = 1",
        "[kind.http]\nexpected_statuses = [\"2xx\"]",
        "interval = \"1 fortnight\"",
    ] {
        assert!(toml::from_str::<HealthCheck>(bad).is_err(), "{bad}");
    }
}

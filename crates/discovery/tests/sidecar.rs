//! The sidecar on paused time, over the memory registry: registration,
//! heartbeats, failing and recovering applications, lost leases, an
//! unreachable registry and shutdown.

mod health_common;

use std::sync::Arc;
use std::time::Duration;

use health_common::{Call, ScriptedProbe, TestRegistry};
use rampart_discovery::health::{
    HealthCheck, HealthError, OnFailure, Sidecar, SidecarConfig, SidecarHandle,
};
use rampart_discovery::registry::{HealthStatus, Instance, Registry, RegistryError, ServiceName};
use tokio::time::{Instant, sleep_until};

const APP: &str = "10.0.0.9:8080";

fn app() -> Instance {
    Instance::new("app-1", "shop/app", "10.0.0.9", 8080).unwrap()
}

fn service() -> ServiceName {
    "shop/app".parse().unwrap()
}

/// A ttl of 9 s heartbeated every 3 s; the app probed every second,
/// healthy after 2 passes, unhealthy after 3 failures.
fn config() -> SidecarConfig {
    SidecarConfig::new()
        .name("test")
        .ttl(Duration::from_secs(9))
        .retry_initial(Duration::from_secs(1))
        .retry_max(Duration::from_secs(4))
        .check(
            HealthCheck::new()
                .interval(Duration::from_secs(1))
                .jitter(0.0)
                .healthy_threshold(2)
                .unhealthy_threshold(3),
        )
}

fn spawn(
    registry: &Arc<TestRegistry>,
    probe: &Arc<ScriptedProbe>,
    config: SidecarConfig,
) -> SidecarHandle {
    Sidecar::new(registry.clone(), app(), config)
        .probe(probe.clone())
        .spawn()
        .unwrap()
}

/// A sidecar started now with `config` on a fresh registry, and the
/// time it started.
fn started(
    config: SidecarConfig,
) -> (
    Arc<TestRegistry>,
    Arc<ScriptedProbe>,
    Instant,
    SidecarHandle,
) {
    let registry = TestRegistry::new();
    let probe = ScriptedProbe::new();
    let start = Instant::now();
    let sidecar = spawn(&registry, &probe, config);
    (registry, probe, start, sidecar)
}

/// The app as registered, if it is.
async fn registered(registry: &TestRegistry) -> Option<Instance> {
    let found = registry.discover(&service()).await.unwrap();
    found.instances.into_iter().next()
}

async fn at(start: Instant, secs: f64) {
    sleep_until(start + Duration::from_secs_f64(secs)).await;
}

/// The times (seconds after `start`) of the calls that did not reach the
/// registry.
fn failed_call_times(registry: &TestRegistry, start: Instant) -> Vec<f64> {
    registry
        .calls()
        .into_iter()
        .filter(|(_, _, reached)| !reached)
        .map(|(_, t, _)| (t - start).as_secs_f64())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn registers_as_unknown_then_heartbeats_keep_it_alive_past_many_ttls() {
    let (registry, _probe, start, sidecar) = started(config());
    at(start, 0.5).await;
    assert_eq!(
        registered(&registry).await.unwrap().health(),
        HealthStatus::Unknown
    );
    let lease = sidecar.state().lease.unwrap();

    at(start, 1.5).await;
    assert_eq!(
        registered(&registry).await.unwrap().health(),
        HealthStatus::Healthy
    );
    at(start, 100.0).await; // eleven ttls
    let instance = registered(&registry).await.expect("still registered");
    assert_eq!(instance.health(), HealthStatus::Healthy);
    let state = sidecar.state();
    assert_eq!(state.lease, Some(lease));
    assert_eq!((state.registrations, state.leases_lost), (1, 0));
    assert!(state.heartbeats >= 32, "{} heartbeats", state.heartbeats);
    assert_eq!(state.last_error, None);
    sidecar.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_app_is_marked_unhealthy_and_healthy_again_when_it_recovers() {
    let (registry, probe, start, sidecar) = started(config());
    at(start, 10.5).await;
    let lease = sidecar.state().lease.unwrap();

    probe.set(APP, false);
    at(start, 12.5).await; // two failures: not yet
    assert_eq!(
        registered(&registry).await.unwrap().health(),
        HealthStatus::Healthy
    );
    at(start, 13.5).await;
    assert_eq!(
        registered(&registry).await.unwrap().health(),
        HealthStatus::Unhealthy
    );
    assert_eq!(sidecar.state().health, HealthStatus::Unhealthy);

    // still registered (and heartbeated) while unhealthy
    at(start, 60.5).await;
    assert_eq!(
        registered(&registry).await.unwrap().health(),
        HealthStatus::Unhealthy
    );
    assert_eq!(sidecar.state().lease, Some(lease));

    probe.set(APP, true);
    at(start, 61.5).await;
    assert_eq!(
        registered(&registry).await.unwrap().health(),
        HealthStatus::Unhealthy
    );
    at(start, 62.5).await;
    assert_eq!(
        registered(&registry).await.unwrap().health(),
        HealthStatus::Healthy
    );
    assert_eq!(sidecar.state().lease, Some(lease));
    let set_health = registry.set_health_calls();
    let statuses: Vec<_> = set_health.iter().map(|(_, h)| *h).collect();
    assert_eq!(
        statuses,
        [
            HealthStatus::Healthy,
            HealthStatus::Unhealthy,
            HealthStatus::Healthy
        ]
    );
    sidecar.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn in_deregister_mode_a_failing_app_leaves_and_comes_back_with_a_new_lease() {
    let registry = TestRegistry::new();
    let probe = ScriptedProbe::new();
    let start = Instant::now();
    let sidecar = spawn(
        &registry,
        &probe,
        config().on_failure(OnFailure::Deregister),
    );
    at(start, 10.5).await;
    let first = sidecar.state().lease.unwrap();

    probe.set(APP, false);
    at(start, 13.5).await;
    assert!(registered(&registry).await.is_none(), "deregistered");
    assert_eq!(sidecar.state().lease, None);
    at(start, 40.0).await;
    assert!(
        registered(&registry).await.is_none(),
        "stays out while failing"
    );

    probe.set(APP, true);
    at(start, 42.5).await;
    let instance = registered(&registry).await.expect("registered again");
    assert_eq!(instance.health(), HealthStatus::Healthy);
    let state = sidecar.state();
    assert_ne!(state.lease, Some(first), "a new lease");
    assert!(state.lease.is_some());
    assert_eq!(state.registrations, 2);
    sidecar.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_lease_deregistered_behind_its_back_is_registered_again_with_a_new_lease() {
    let (registry, _probe, start, sidecar) = started(config());
    at(start, 10.5).await;
    let first = sidecar.state().lease.unwrap();
    registry.inner.deregister(first).await.unwrap();
    assert!(registered(&registry).await.is_none());

    // the next heartbeat, at 13 s, finds the lease lost
    at(start, 13.5).await;
    let instance = registered(&registry).await.expect("registered again");
    assert_eq!(
        instance.health(),
        HealthStatus::Healthy,
        "with its current status"
    );
    let state = sidecar.state();
    assert!(state.lease.is_some() && state.lease != Some(first));
    assert_eq!((state.registrations, state.leases_lost), (2, 1));
    let again = state.lease.unwrap();
    registry.heartbeat(again).await.unwrap();
    sidecar.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_registry_is_retried_with_backoff_and_an_expired_lease_replaced() {
    let (registry, _probe, start, sidecar) = started(config());
    at(start, 10.5).await;
    let first = sidecar.state().lease.unwrap();

    // the heartbeat at 13 s fails, then retries wait 1, 2, 4 and 4 s (the cap)
    registry.set_down(true);
    at(start, 25.0).await;
    assert!(
        registered(&registry).await.is_none(),
        "the lease ran out at 19 s"
    );
    at(start, 30.5).await;
    assert_eq!(
        failed_call_times(&registry, start),
        [13.0, 14.0, 16.0, 20.0, 24.0, 28.0]
    );
    let state = sidecar.state();
    assert_eq!(
        state.last_error.as_deref(),
        Some("registry backend failed: registry unreachable")
    );
    assert_eq!(state.lease, Some(first), "not known to be lost yet");

    // back: the retry at 32 s finds the lease lost and registers anew
    registry.set_down(false);
    at(start, 32.5).await;
    let instance = registered(&registry).await.expect("registered again");
    assert_eq!(instance.health(), HealthStatus::Healthy);
    let state = sidecar.state();
    assert!(state.lease.is_some() && state.lease != Some(first));
    assert_eq!((state.registrations, state.leases_lost), (2, 1));

    // and the heartbeat interval is back (next at 35 s, not after a backoff)
    let calls_before = registry.calls().len();
    at(start, 35.5).await;
    let last = registry.calls().into_iter().nth(calls_before).unwrap();
    assert!(matches!(last.0, Call::Heartbeat(_)));
    assert_eq!((last.1 - start).as_secs_f64(), 35.0);
    sidecar.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_first_registration_is_retried_until_the_registry_answers() {
    let registry = TestRegistry::new();
    registry.set_down(true);
    let probe = ScriptedProbe::new();
    let start = Instant::now();
    let sidecar = spawn(&registry, &probe, config());
    at(start, 7.5).await;
    assert_eq!(failed_call_times(&registry, start), [0.0, 1.0, 3.0, 7.0]);
    assert_eq!(sidecar.state().lease, None);
    registry.set_down(false);
    at(start, 11.5).await;
    assert_eq!(
        registered(&registry).await.unwrap().health(),
        HealthStatus::Healthy
    );
    assert_eq!(sidecar.state().registrations, 1);
    sidecar.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_deregisters() {
    let (registry, _probe, start, sidecar) = started(config());
    at(start, 5.0).await;
    assert!(registered(&registry).await.is_some());
    sidecar.shutdown().await.unwrap();
    assert!(registered(&registry).await.is_none());
    let deregistrations = registry
        .calls()
        .into_iter()
        .filter(|(c, _, _)| matches!(c, Call::Deregister(_)))
        .count();
    assert_eq!(deregistrations, 1);
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_signal_deregisters_and_stops() {
    let registry = TestRegistry::new();
    let probe = ScriptedProbe::new();
    let start = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let sidecar = Sidecar::new(registry.clone(), app(), config())
        .probe(probe.clone())
        .shutdown_on(async move {
            let _ = rx.await;
        })
        .spawn()
        .unwrap();
    at(start, 5.0).await;
    assert!(registered(&registry).await.is_some());
    tx.send(()).unwrap();
    at(start, 5.1).await;
    assert!(registered(&registry).await.is_none());
    let state = sidecar.state();
    assert!(state.stopped && state.lease.is_none());
    let probes = probe.count(APP);
    at(start, 20.0).await;
    assert_eq!(probe.count(APP), probes, "no probe after shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_failed_deregistration_at_shutdown_is_reported() {
    let (registry, _probe, start, sidecar) = started(config());
    at(start, 5.0).await;
    registry.set_down(true);
    match sidecar.shutdown().await {
        Err(RegistryError::Backend(_)) => {}
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(registered(&registry).await.is_some(), "left to expire");
}

#[tokio::test]
async fn invalid_settings_are_refused_naming_the_field() {
    let registry = TestRegistry::new();
    for (config, field) in [
        (config().ttl(Duration::ZERO), "ttl"),
        (config().heartbeat_fraction(1.0), "heartbeat_fraction"),
        (config().heartbeat_fraction(0.0), "heartbeat_fraction"),
        (config().heartbeat_fraction(f64::NAN), "heartbeat_fraction"),
        (config().retry_initial(Duration::ZERO), "retry_initial"),
        (config().retry_max(Duration::from_millis(10)), "retry_max"),
        (
            config().check(HealthCheck::new().healthy_threshold(0)),
            "healthy_threshold",
        ),
    ] {
        match Sidecar::new(registry.clone(), app(), config).spawn() {
            Err(HealthError::Config(e)) => assert_eq!(e.field(), field, "{e}"),
            other => panic!("expected a config error for {field}, got {other:?}"),
        }
    }
    assert!(registry.calls().is_empty());
}

#[test]
fn settings_decode_from_toml_and_refuse_unknown_keys() {
    let config: SidecarConfig = toml::from_str(
        r#"
        name = "orders"
        ttl = "12s"
        heartbeat_fraction = 0.25
        on_failure = "deregister"
        retry_initial = "500ms"
        retry_max = "10s"
        [check]
        healthy_threshold = 1
        "#,
    )
    .unwrap();
    assert_eq!(
        config,
        SidecarConfig::new()
            .name("orders")
            .ttl(Duration::from_secs(12))
            .heartbeat_fraction(0.25)
            .on_failure(OnFailure::Deregister)
            .retry_initial(Duration::from_millis(500))
            .retry_max(Duration::from_secs(10))
            .check(HealthCheck::new().healthy_threshold(1))
    );
    assert_eq!(config.heartbeat_interval(), Duration::from_secs(3));
    for bad in [
        "tll = \"1s\"",
        "on_failure = \"panic\"",
        "[check]\nthreshold = 1",
    ] {
        assert!(toml::from_str::<SidecarConfig>(bad).is_err(), "{bad}");
    }
}

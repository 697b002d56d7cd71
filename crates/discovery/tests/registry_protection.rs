//! Self-preservation: a mass expiry keeps instances and flags the service.

mod common;

use std::time::Duration;

use common::{drain, instance};
use rampart_core::testing::TestRecorder;
use rampart_discovery::registry::{
    EventKind, LeaseId, MemoryRegistry, MemoryRegistryConfig, Registry, ServiceName,
};
use tokio::time::sleep;

const TTL: Duration = Duration::from_secs(10);

fn orders() -> ServiceName {
    "orders".parse().unwrap()
}

fn protected(threshold: f64) -> MemoryRegistry {
    MemoryRegistryConfig::new()
        .name("reg")
        .protection_threshold(threshold)
        .build()
        .unwrap()
}

async fn register_ten(registry: &MemoryRegistry) -> Vec<LeaseId> {
    let mut leases = Vec::new();
    for i in 0..10 {
        leases.push(
            registry
                .register(instance("orders", &format!("i{i}")), TTL)
                .await
                .unwrap(),
        );
        // distinct deadlines: i0 runs out first
        sleep(Duration::from_millis(10)).await;
    }
    leases
}

/// Ten instances at 0.85 whose heartbeats all stopped a TTL ago: one
/// expired, nine kept.
async fn partitioned() -> (MemoryRegistry, Vec<LeaseId>) {
    let registry = protected(0.85);
    let leases = register_ten(&registry).await;
    sleep(TTL * 2).await;
    assert!(registry.is_protected(&orders()));
    assert_eq!(count(&registry).await, 9);
    (registry, leases)
}

const LABELS: [(&str, &str); 2] = [("name", "reg"), ("service", "default/default/orders")];

async fn count(registry: &MemoryRegistry) -> usize {
    registry.discover(&orders()).await.unwrap().instances.len()
}

#[tokio::test(start_paused = true)]
async fn without_a_threshold_every_instance_expires() {
    let registry = MemoryRegistry::new();
    register_ten(&registry).await;
    sleep(TTL * 2).await;
    assert_eq!(count(&registry).await, 0);
    assert!(!registry.is_protected(&orders()));
}

#[tokio::test(start_paused = true)]
async fn mass_expiry_keeps_instances_until_heartbeats_recover() {
    let registry = protected(0.85);
    let leases = register_ten(&registry).await;
    let mut watch = registry.watch(&orders()).await.unwrap();
    assert_eq!(drain(&mut watch).len(), 10);

    sleep(TTL * 2).await; // every heartbeat stopped
    // one expiry leaves 9 of 10 (>= 8.5); a second would leave 8
    assert_eq!(count(&registry).await, 9);
    assert!(registry.is_protected(&orders()));
    assert_eq!(registry.protected_services(), [orders()]);
    let events = drain(&mut watch);
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind, events[0].instance.id()),
        (EventKind::Remove, "i0")
    );
    assert!(registry.heartbeat(leases[0]).await.is_err());

    // kept without polling: nothing changes while nothing happens
    sleep(Duration::from_secs(30)).await;
    assert_eq!(count(&registry).await, 9);

    // heartbeats come back (i0's expiry still in the window): the kept
    // leases renew and protection lifts
    for lease in &leases[1..] {
        registry.heartbeat(*lease).await.unwrap();
    }
    assert!(!registry.is_protected(&orders()));
    assert!(drain(&mut watch).is_empty());
    // and they live on their renewed leases as normal
    sleep(TTL / 2).await;
    for lease in &leases[1..] {
        registry.heartbeat(*lease).await.unwrap();
    }
    sleep(TTL / 2).await;
    assert_eq!(count(&registry).await, 9);
}

#[tokio::test(start_paused = true)]
async fn dead_instances_stay_until_an_operator_clears_them() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (registry, leases) = partitioned().await;
    // six recover, three are dead: 6 alive of 10 is still below 8.5
    for lease in &leases[1..7] {
        registry.heartbeat(*lease).await.unwrap();
    }
    assert!(registry.is_protected(&orders()));
    assert_eq!(count(&registry).await, 9);

    assert_eq!(
        recorder
            .get("rampart_discovery_registry_protected", &LABELS)
            .gauge(),
        1.0
    );
    assert_eq!(
        recorder
            .get("rampart_discovery_registry_protection_kept_total", &LABELS)
            .counter(),
        9
    );
    assert_eq!(
        recorder
            .get("rampart_discovery_registry_expired_total", &LABELS)
            .counter(),
        1
    );

    let mut watch = registry.watch(&orders()).await.unwrap();
    drain(&mut watch);
    assert_eq!(registry.clear_protection(&orders()), 3);
    assert!(!registry.is_protected(&orders()));
    let removed: Vec<_> = drain(&mut watch)
        .iter()
        .map(|e| (e.kind, e.instance.id().to_owned()))
        .collect();
    assert_eq!(
        removed,
        ["i7", "i8", "i9"].map(|id| (EventKind::Remove, id.to_owned()))
    );
    assert_eq!(count(&registry).await, 6);
    assert_eq!(
        recorder
            .get("rampart_discovery_registry_protected", &LABELS)
            .gauge(),
        0.0
    );
    assert_eq!(
        recorder
            .get("rampart_discovery_registry_expired_total", &LABELS)
            .counter(),
        4
    );
}

#[tokio::test(start_paused = true)]
async fn expiries_count_against_the_threshold_within_the_window_only() {
    let registry = MemoryRegistryConfig::new()
        .protection_threshold(0.85)
        .protection_window(Duration::from_secs(60))
        .build()
        .unwrap();
    let leases = register_ten(&registry).await;
    // i0 stops heart-beating and expires: 9 of 10 left
    for _ in 0..2 {
        sleep(TTL / 2 + Duration::from_millis(100)).await;
        for lease in &leases[1..] {
            registry.heartbeat(*lease).await.unwrap();
        }
    }
    assert_eq!(count(&registry).await, 9);
    // i1 stops too, within the window: 8 alive of 10 seen is below 8.5
    for _ in 0..3 {
        sleep(TTL / 2).await;
        for lease in &leases[2..] {
            registry.heartbeat(*lease).await.unwrap();
        }
    }
    assert_eq!(count(&registry).await, 9);
    assert!(registry.is_protected(&orders()));
    // keep the others alive until i0's expiry has left the window; the
    // next heartbeat applies the rule again: 8 alive of 9 seen is enough
    for _ in 0..12 {
        sleep(TTL / 2).await;
        for lease in &leases[2..] {
            registry.heartbeat(*lease).await.unwrap();
        }
    }
    assert_eq!(count(&registry).await, 8);
    assert!(!registry.is_protected(&orders()));
}

#[test]
fn refuses_bad_settings_naming_the_field() {
    let err = MemoryRegistryConfig::new()
        .protection_threshold(1.5)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "protection_threshold");
    let err = MemoryRegistryConfig::new()
        .protection_threshold(f64::NAN)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "protection_threshold");
    let err = MemoryRegistryConfig::new()
        .protection_window(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "protection_window");
    assert!(toml::from_str::<MemoryRegistryConfig>("protection = 0.5").is_err());
}

#[tokio::test(start_paused = true)]
async fn recovery_after_the_window_expires_the_stragglers() {
    let registry = protected(0.85);
    let leases = register_ten(&registry).await;
    sleep(TTL * 2).await;
    assert_eq!(count(&registry).await, 9);
    // a long partition: i0's expiry leaves the window, and nothing changes
    // until something happens
    sleep(Duration::from_secs(600)).await;
    assert_eq!(count(&registry).await, 9);
    assert!(registry.is_protected(&orders()));
    // i1..=i7 come back: 7 alive of 9 is below 7.65, still protected
    for lease in &leases[1..8] {
        registry.heartbeat(*lease).await.unwrap();
    }
    assert!(registry.is_protected(&orders()));
    // i8 comes back: 8 of 9 is enough, so i9 expires and protection lifts
    let mut watch = registry.watch(&orders()).await.unwrap();
    drain(&mut watch);
    registry.heartbeat(leases[8]).await.unwrap();
    assert!(!registry.is_protected(&orders()));
    let events = drain(&mut watch);
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind, events[0].instance.id()),
        (EventKind::Remove, "i9")
    );
    assert!(registry.heartbeat(leases[9]).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn deregistering_the_kept_instances_lifts_the_protection() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (registry, leases) = partitioned().await;
    // deregistration is never held back; the last one leaves nothing to keep
    for lease in &leases[1..] {
        registry.deregister(*lease).await.unwrap();
    }
    assert_eq!(count(&registry).await, 0);
    assert!(!registry.is_protected(&orders()));
    assert!(registry.protected_services().is_empty());
    assert_eq!(
        recorder
            .get("rampart_discovery_registry_protected", &LABELS)
            .gauge(),
        0.0
    );
}

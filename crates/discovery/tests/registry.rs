//! The memory registry: leases on the tokio clock, discover, watch.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{drain, instance};
use rampart_discovery::registry::{
    EventKind, HealthStatus, MemoryRegistry, Registry, RegistryError, ServiceName,
};
use tokio::time::sleep;

fn name(s: &str) -> ServiceName {
    s.parse().unwrap()
}

async fn ids(registry: &dyn Registry, service: &str) -> Vec<String> {
    let found = registry.discover(&name(service)).await.unwrap();
    found.instances.iter().map(|i| i.id().to_owned()).collect()
}

#[tokio::test(start_paused = true)]
async fn lease_expires_after_ttl_without_heartbeat() {
    let registry = MemoryRegistry::new();
    registry
        .register(instance("orders", "a"), Duration::from_secs(10))
        .await
        .unwrap();
    sleep(Duration::from_millis(9_999)).await;
    assert_eq!(ids(&registry, "orders").await, ["a"]);
    sleep(Duration::from_millis(2)).await;
    assert!(ids(&registry, "orders").await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn heartbeats_renew_the_lease() {
    let registry = MemoryRegistry::new();
    let lease = registry
        .register(instance("orders", "a"), Duration::from_secs(10))
        .await
        .unwrap();
    for _ in 0..5 {
        sleep(Duration::from_secs(6)).await;
        registry.heartbeat(lease).await.unwrap();
    }
    // 30 s in, three times the ttl: still here
    assert_eq!(ids(&registry, "orders").await, ["a"]);
    // heartbeats stop: gone one ttl after the last one, not before
    sleep(Duration::from_millis(9_999)).await;
    assert_eq!(ids(&registry, "orders").await, ["a"]);
    sleep(Duration::from_millis(2)).await;
    assert!(ids(&registry, "orders").await.is_empty());
    assert!(matches!(
        registry.heartbeat(lease).await,
        Err(RegistryError::UnknownLease(l)) if l == lease
    ));
}

#[tokio::test(start_paused = true)]
async fn deregister_removes_and_revokes_the_lease() {
    let registry = MemoryRegistry::new();
    let a = registry
        .register(instance("orders", "a"), Duration::from_secs(10))
        .await
        .unwrap();
    let _b = registry
        .register(instance("orders", "b"), Duration::from_secs(10))
        .await
        .unwrap();
    registry.deregister(a).await.unwrap();
    assert_eq!(ids(&registry, "orders").await, ["b"]);
    assert!(matches!(
        registry.deregister(a).await,
        Err(RegistryError::UnknownLease(_))
    ));
    assert!(matches!(
        registry.heartbeat(a).await,
        Err(RegistryError::UnknownLease(_))
    ));
    assert_eq!(registry.revision(), 3);
    assert!(matches!(
        registry
            .register(instance("orders", "c"), Duration::ZERO)
            .await,
        Err(RegistryError::InvalidTtl(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn reregistering_an_id_updates_and_revokes_the_old_lease() {
    let registry = MemoryRegistry::new();
    let mut watch = registry.watch(&name("orders")).await.unwrap();
    let old = registry
        .register(instance("orders", "a"), Duration::from_secs(10))
        .await
        .unwrap();
    let new = registry
        .register(
            instance("orders", "a").with_weight(7),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(matches!(
        registry.heartbeat(old).await,
        Err(RegistryError::UnknownLease(_))
    ));
    // the old lease's timer is gone with it: nothing expires at 10 s
    sleep(Duration::from_secs(30)).await;
    let found = registry.discover(&name("orders")).await.unwrap();
    assert_eq!(found.instances.len(), 1);
    assert_eq!(found.instances[0].weight(), 7);
    assert_eq!(found.revision, 2);
    let kinds: Vec<_> = drain(&mut watch)
        .iter()
        .map(|e| (e.revision, e.kind))
        .collect();
    assert_eq!(kinds, [(1, EventKind::Insert), (2, EventKind::Update)]);
    registry.heartbeat(new).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn watch_starts_with_the_current_set_then_every_change_once() {
    let registry = MemoryRegistry::new();
    let a = registry
        .register(instance("orders", "a"), Duration::from_secs(10))
        .await
        .unwrap();
    registry
        .register(instance("orders", "b"), Duration::from_secs(20))
        .await
        .unwrap();
    // another service's changes are not delivered, but use revisions
    registry
        .register(instance("billing", "x"), Duration::from_secs(20))
        .await
        .unwrap();
    let mut watch = registry.watch(&name("orders")).await.unwrap();
    registry.heartbeat(a).await.unwrap(); // no event
    registry
        .register(
            instance("orders", "b").with_zone("z2"),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    sleep(Duration::from_secs(11)).await; // a expires
    let events = drain(&mut watch);
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.revision, e.kind, e.instance.id()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, EventKind::Insert, "a"),
            (2, EventKind::Insert, "b"),
            (4, EventKind::Update, "b"),
            (5, EventKind::Remove, "a"),
        ]
    );
    assert_eq!(events[2].instance.zone(), Some("z2"));
    // the registry going away ends the watch
    drop(registry);
    assert!(watch.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn set_health_updates_watchers_once_and_keeps_the_lease() {
    let registry = MemoryRegistry::new();
    let lease = registry
        .register(instance("orders", "a"), Duration::from_secs(10))
        .await
        .unwrap();
    let mut watch = registry.watch(&name("orders")).await.unwrap();
    let orders = name("orders");
    let revision = registry
        .set_health(&orders, "a", HealthStatus::Unhealthy)
        .await
        .unwrap();
    assert_eq!(revision, 2);
    // the same status again: no change, no event, same revision
    assert_eq!(
        registry
            .set_health(&orders, "a", HealthStatus::Unhealthy)
            .await
            .unwrap(),
        2
    );
    let found = registry.discover(&orders).await.unwrap();
    assert_eq!(found.instances[0].health(), HealthStatus::Unhealthy);
    let seen: Vec<_> = drain(&mut watch)
        .iter()
        .map(|e| (e.revision, e.kind, e.instance.health()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, EventKind::Insert, HealthStatus::Healthy),
            (2, EventKind::Update, HealthStatus::Unhealthy),
        ]
    );
    // the lease is the same one: a heartbeat still renews it
    registry.heartbeat(lease).await.unwrap();
    assert!(matches!(
        registry.set_health(&orders, "b", HealthStatus::Healthy).await,
        Err(RegistryError::UnknownInstance { ref id, .. }) if id == "b"
    ));
}

// === the shared contract (tests/common/registry_suite.rs), on memory ===

mod conformance {
    use super::common::registry_suite as suite;
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deregister() {
        suite::deregister_removes_and_revokes_the_lease(&MemoryRegistry::new()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn reregister() {
        suite::reregistering_an_id_updates_and_revokes_the_old_lease(&MemoryRegistry::new()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn watch() {
        suite::watch_starts_with_the_current_set_then_every_change_once(&MemoryRegistry::new())
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn set_health() {
        suite::set_health_updates_watchers_once_and_keeps_the_lease(&MemoryRegistry::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers() {
        let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
        suite::concurrent_writers_are_seen_once_in_revision_order(registry, 8, 50).await;
    }
}

//! The registry contract, generic over `&dyn Registry`: run on the memory
//! registry and on etcd. Only relative revisions are asserted (etcd's are
//! shared with everything else in the cluster).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rampart_discovery::registry::{EventKind, HealthStatus, Registry, RegistryError, ServiceName};

use super::{apply, assert_quiet, instance, take};

const TTL: Duration = Duration::from_secs(60);

fn name(s: &str) -> ServiceName {
    s.parse().unwrap()
}

async fn ids(registry: &dyn Registry, service: &str) -> Vec<String> {
    let found = registry.discover(&name(service)).await.unwrap();
    found.instances.iter().map(|i| i.id().to_owned()).collect()
}

/// Deregistration removes the instance and forgets the lease; a zero ttl
/// is refused.
pub async fn deregister_removes_and_revokes_the_lease(registry: &dyn Registry) {
    let a = registry
        .register(instance("orders", "a"), TTL)
        .await
        .unwrap();
    let _b = registry
        .register(instance("orders", "b"), TTL)
        .await
        .unwrap();
    assert_eq!(ids(registry, "orders").await, ["a", "b"]);
    registry.deregister(a).await.unwrap();
    assert_eq!(ids(registry, "orders").await, ["b"]);
    assert!(matches!(registry.deregister(a).await, Err(RegistryError::UnknownLease(l)) if l == a));
    assert!(matches!(registry.heartbeat(a).await, Err(RegistryError::UnknownLease(l)) if l == a));
    assert!(matches!(
        registry
            .register(instance("orders", "c"), Duration::ZERO)
            .await,
        Err(RegistryError::InvalidTtl(_))
    ));
}

/// Registering an id again is an update, and revokes the older lease.
pub async fn reregistering_an_id_updates_and_revokes_the_old_lease(registry: &dyn Registry) {
    let orders = name("orders");
    let mut watch = registry.watch(&orders).await.unwrap();
    let old = registry
        .register(instance("orders", "a"), TTL)
        .await
        .unwrap();
    let new = registry
        .register(instance("orders", "a").with_weight(7), TTL)
        .await
        .unwrap();
    assert_ne!(old, new);
    assert!(matches!(
        registry.heartbeat(old).await,
        Err(RegistryError::UnknownLease(_))
    ));
    registry.heartbeat(new).await.unwrap();
    let found = registry.discover(&orders).await.unwrap();
    assert_eq!(found.instances.len(), 1);
    assert_eq!(found.instances[0].weight(), 7);
    let events = take(&mut watch, 2).await;
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Insert, EventKind::Update]);
    assert!(events[0].revision < events[1].revision);
    assert!(found.revision >= events[1].revision);
    assert_quiet(&mut watch).await;
}

/// A watch starts with the current instances, then delivers each change
/// of its service once, in revision order; heartbeats and other services
/// deliver nothing.
pub async fn watch_starts_with_the_current_set_then_every_change_once(registry: &dyn Registry) {
    let a = registry
        .register(instance("orders", "a"), TTL)
        .await
        .unwrap();
    registry
        .register(instance("orders", "b"), TTL)
        .await
        .unwrap();
    registry
        .register(instance("billing", "x"), TTL)
        .await
        .unwrap();
    let mut watch = registry.watch(&name("orders")).await.unwrap();
    registry.heartbeat(a).await.unwrap();
    registry
        .register(instance("orders", "b").with_zone("z2"), TTL)
        .await
        .unwrap();
    registry
        .register(instance("billing", "y"), TTL)
        .await
        .unwrap();
    registry.deregister(a).await.unwrap();
    let events = take(&mut watch, 4).await;
    let seen: Vec<_> = events.iter().map(|e| (e.kind, e.instance.id())).collect();
    assert_eq!(
        seen,
        [
            (EventKind::Insert, "a"),
            (EventKind::Insert, "b"),
            (EventKind::Update, "b"),
            (EventKind::Remove, "a"),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].revision < w[1].revision));
    assert_eq!(events[2].instance.zone(), Some("z2"));
    assert_quiet(&mut watch).await;
}

/// Health changes are one update each; setting the same status again
/// changes nothing; the lease is kept.
pub async fn set_health_updates_watchers_once_and_keeps_the_lease(registry: &dyn Registry) {
    let orders = name("orders");
    let lease = registry
        .register(instance("orders", "a"), TTL)
        .await
        .unwrap();
    let mut watch = registry.watch(&orders).await.unwrap();
    let revision = registry
        .set_health(&orders, "a", HealthStatus::Unhealthy)
        .await
        .unwrap();
    assert_eq!(
        registry
            .set_health(&orders, "a", HealthStatus::Unhealthy)
            .await
            .unwrap(),
        revision,
        "the same status again: same revision"
    );
    let found = registry.discover(&orders).await.unwrap();
    assert_eq!(found.instances[0].health(), HealthStatus::Unhealthy);
    let events = take(&mut watch, 2).await;
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.instance.health()))
        .collect();
    assert_eq!(
        seen,
        [
            (EventKind::Insert, HealthStatus::Healthy),
            (EventKind::Update, HealthStatus::Unhealthy),
        ]
    );
    assert_eq!(events[1].revision, revision);
    assert_quiet(&mut watch).await;
    // the lease is the same one: a heartbeat renews it, deregister removes
    registry.heartbeat(lease).await.unwrap();
    registry.deregister(lease).await.unwrap();
    assert!(
        registry
            .discover(&orders)
            .await
            .unwrap()
            .instances
            .is_empty()
    );
    assert!(matches!(
        registry.set_health(&orders, "a", HealthStatus::Healthy).await,
        Err(RegistryError::UnknownInstance { ref id, .. }) if id == "a"
    ));
}

/// Writers register, update and deregister at once; watchers, one from
/// the start and one joining midway, each see a consistent history (every
/// change once, strictly increasing revisions) ending in the final state.
pub async fn concurrent_writers_are_seen_once_in_revision_order(
    registry: Arc<dyn Registry>,
    writers: usize,
    per_writer: usize,
) {
    let service = name("shop/orders");
    let mut early = registry.watch(&service).await.unwrap();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                let mut changes = 0;
                for i in 0..per_writer {
                    let id = format!("w{w}-{i}");
                    let lease = registry
                        .register(instance("shop/orders", &id), TTL)
                        .await
                        .unwrap();
                    changes += 1;
                    if i % 2 == 0 {
                        registry
                            .register(instance("shop/orders", &id).with_weight(2), TTL)
                            .await
                            .unwrap();
                        changes += 1;
                    } else if i % 3 == 0 {
                        registry.deregister(lease).await.unwrap();
                        changes += 1;
                    }
                    registry
                        .register(instance("other", &id), TTL)
                        .await
                        .unwrap();
                    tokio::task::yield_now().await;
                }
                changes
            })
        })
        .collect();
    tokio::task::yield_now().await;
    let mut late = registry.watch(&service).await.unwrap();
    let mut changes = 0;
    for t in tasks {
        changes += t.await.unwrap();
    }
    let final_state = registry.discover(&service).await.unwrap();
    let expected: BTreeMap<_, _> = final_state
        .instances
        .iter()
        .map(|i| (i.id().to_owned(), i.clone()))
        .collect();
    let early_events = take(&mut early, changes).await;
    assert_quiet(&mut early).await;
    let mut state = BTreeMap::new();
    let mut last = 0;
    apply(&mut state, &mut last, &early_events);
    assert_eq!(state, expected, "early watcher");
    assert!(last <= final_state.revision);
    // the late watcher: its snapshot, then the changes up to the last one
    let early_last = last;
    let mut state = BTreeMap::new();
    let mut last = 0;
    while last < early_last {
        let events = take(&mut late, 1).await;
        apply(&mut state, &mut last, &events);
    }
    assert_eq!(last, early_last);
    assert_eq!(state, expected, "late watcher");
    assert_quiet(&mut late).await;
}

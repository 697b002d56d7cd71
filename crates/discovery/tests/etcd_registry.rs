//! The etcd registry against a real etcd: the shared conformance suite,
//! lease expiry of a dead client, and the behaviour across an etcd restart
//! (watch resume, stale discovery, leases lost while it was down).
#![cfg(feature = "etcd")]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::etcd::{OwnEtcd, endpoints, unique_prefix};
use common::{apply, assert_quiet, instance, registry_suite as suite, take};
use rampart_core::testing::TestRecorder;
use rampart_discovery::registry::{
    EtcdRegistry, EtcdRegistryConfig, EventKind, Registry, RegistryError, STALE, STALE_TOTAL,
    ServiceName,
};

async fn registry(test: &str) -> EtcdRegistry {
    EtcdRegistryConfig::new()
        .endpoints(endpoints())
        .prefix(unique_prefix(test))
        .name(test)
        .build()
        .await
        .unwrap()
}

fn name(s: &str) -> ServiceName {
    s.parse().unwrap()
}

#[tokio::test]
async fn deregister_removes_and_revokes_the_lease() {
    suite::deregister_removes_and_revokes_the_lease(&registry("dereg").await).await;
}

#[tokio::test]
async fn reregistering_an_id_updates_and_revokes_the_old_lease() {
    suite::reregistering_an_id_updates_and_revokes_the_old_lease(&registry("rereg").await).await;
}

#[tokio::test]
async fn watch_starts_with_the_current_set_then_every_change_once() {
    suite::watch_starts_with_the_current_set_then_every_change_once(&registry("watch").await).await;
}

#[tokio::test]
async fn set_health_updates_watchers_once_and_keeps_the_lease() {
    suite::set_health_updates_watchers_once_and_keeps_the_lease(&registry("health").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_seen_once_in_revision_order() {
    let registry: Arc<dyn Registry> = Arc::new(registry("concurrent").await);
    suite::concurrent_writers_are_seen_once_in_revision_order(registry, 6, 20).await;
}

#[tokio::test]
async fn keys_values_and_leases_follow_the_documented_layout() {
    let registry = registry("layout").await;
    let i = instance("shop/web/orders", "a/1");
    let lease = registry
        .register(i.clone(), Duration::from_millis(2500))
        .await
        .unwrap();
    let key = registry.instance_key(i.service(), "a/1");
    assert_eq!(key, format!("{}/shop/web/orders/a/1", registry.prefix()));
    let mut client = registry.client().clone();
    let got = client.get(key.as_str(), None).await.unwrap();
    let kv = &got.kvs()[0];
    assert_eq!(
        serde_json::from_slice::<rampart_discovery::registry::Instance>(kv.value()).unwrap(),
        i
    );
    assert_eq!(kv.lease() as u64, lease.0, "the LeaseId is the etcd lease");
    let ttl = client.lease_time_to_live(kv.lease(), None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 3, "2.5 s rounds up to 3 s");
    // a value that is not an instance is skipped, never served
    client
        .put(
            format!("{}junk", registry.service_prefix(i.service())),
            "{",
            None,
        )
        .await
        .unwrap();
    assert_eq!(registry.discover(i.service()).await.unwrap().instances, [i]);
}

#[tokio::test]
async fn bad_settings_are_refused_naming_the_field() {
    let err = EtcdRegistryConfig::new()
        .endpoints(Vec::<String>::new())
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.field(), "endpoints");
    let err = EtcdRegistryConfig::new()
        .endpoints(["127.0.0.1:2379"])
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.field(), "endpoints");
    let err = EtcdRegistryConfig::new()
        .prefix("/")
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.field(), "prefix");
    let err = EtcdRegistryConfig::new()
        .backoff_min(Duration::from_secs(2))
        .backoff_max(Duration::from_secs(1))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.field(), "backoff_max");
    assert!(toml::from_str::<EtcdRegistryConfig>("endpoint = []").is_err());
}

/// A registering client that dies without deregistering: its lease runs
/// out and a watcher elsewhere sees the removal.
#[tokio::test]
async fn lease_expires_when_the_registering_client_dies() {
    let prefix = unique_prefix("expiry");
    let watcher = EtcdRegistryConfig::new()
        .endpoints(endpoints())
        .prefix(&prefix)
        .build()
        .await
        .unwrap();
    let orders = name("orders");
    let mut watch = watcher.watch(&orders).await.unwrap();
    {
        let dying = EtcdRegistryConfig::new()
            .endpoints(endpoints())
            .prefix(&prefix)
            .build()
            .await
            .unwrap();
        dying
            .register(instance("orders", "a"), Duration::from_secs(2))
            .await
            .unwrap();
        // dropped here: no deregistration, no more heartbeats
    }
    let inserted = take(&mut watch, 1).await;
    assert_eq!(inserted[0].kind, EventKind::Insert);
    let start = tokio::time::Instant::now();
    let removed = take(&mut watch, 1).await;
    assert_eq!(
        (removed[0].kind, removed[0].instance.id()),
        (EventKind::Remove, "a")
    );
    assert!(
        start.elapsed() >= Duration::from_millis(1000),
        "not before its ttl"
    );
    assert!(
        watcher
            .discover(&orders)
            .await
            .unwrap()
            .instances
            .is_empty()
    );
}

/// etcd is SIGKILLed while a watch runs and restarted on the same data:
/// every change is delivered exactly once, in order, across the outage;
/// while it is down discovery serves the last instances, flagged stale and
/// counted; a lease that ran out meanwhile gets `UnknownLease`.
#[tokio::test]
async fn watch_resumes_across_an_etcd_restart_and_discovery_serves_stale() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut etcd = OwnEtcd::start("restart").await;
    let registry = EtcdRegistryConfig::new()
        .endpoints([etcd.endpoint()])
        .name("restart")
        .request_timeout(Duration::from_millis(500))
        .backoff_min(Duration::from_millis(50))
        .backoff_max(Duration::from_millis(400))
        .build()
        .await
        .unwrap();
    let orders = name("orders");
    let mut watch = registry.watch(&orders).await.unwrap();
    let mut events = Vec::new();
    let ttl = Duration::from_secs(3600);
    registry
        .register(instance("orders", "a"), ttl)
        .await
        .unwrap();
    let b = registry
        .register(instance("orders", "b"), ttl)
        .await
        .unwrap();
    let short = registry
        .register(instance("orders", "short"), Duration::from_secs(2))
        .await
        .unwrap();
    events.extend(take(&mut watch, 3).await);
    assert_eq!(registry.discover(&orders).await.unwrap().instances.len(), 3);

    etcd.kill();
    // down: discovery answers stale, writes fail
    let stale = registry.discover(&orders).await.unwrap();
    assert!(stale.stale);
    assert_eq!(stale.instances.len(), 3);
    let labels = [("name", "restart"), ("service", "default/default/orders")];
    assert_eq!(recorder.get(STALE_TOTAL, &labels).counter(), 1);
    assert_eq!(recorder.get(STALE, &labels).gauge(), 1.0);
    assert!(matches!(
        registry.heartbeat(b).await,
        Err(RegistryError::Backend(_))
    ));
    let never = registry.discover(&name("never-read")).await;
    assert!(matches!(never, Err(RegistryError::Backend(_))), "{never:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    etcd.restart().await;
    registry.deregister(b).await.unwrap();
    registry
        .register(instance("orders", "c"), ttl)
        .await
        .unwrap();
    registry
        .register(instance("orders", "a").with_weight(5), ttl)
        .await
        .unwrap();
    // etcd restarts lease countdowns on start: `short` runs out 2 s later
    events.extend(take(&mut watch, 4).await);
    assert!(matches!(
        registry.heartbeat(short).await,
        Err(RegistryError::UnknownLease(l)) if l == short
    ));
    assert_quiet(&mut watch).await;

    let fresh = registry.discover(&orders).await.unwrap();
    assert!(!fresh.stale);
    assert_eq!(recorder.get(STALE, &labels).gauge(), 0.0);
    let mut state = BTreeMap::new();
    let mut last = 0;
    apply(&mut state, &mut last, &events);
    let expected: BTreeMap<_, _> = fresh
        .instances
        .iter()
        .map(|i| (i.id().to_owned(), i.clone()))
        .collect();
    assert_eq!(state, expected);
    let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.instance.id())).collect();
    assert_eq!(
        kinds[3..],
        [
            (EventKind::Remove, "b"),
            (EventKind::Insert, "c"),
            (EventKind::Update, "a"),
            (EventKind::Remove, "short"),
        ]
    );
}

/// The watch is away while etcd compacts past its revision: on return it
/// re-reads the service and delivers the difference once (an update, an
/// insert, a removal), then watches on.
#[tokio::test]
async fn watch_resynchronises_after_compaction() {
    let mut etcd = OwnEtcd::start("compaction").await;
    let registry = EtcdRegistryConfig::new()
        .endpoints([etcd.endpoint()])
        .request_timeout(Duration::from_millis(500))
        .backoff_min(Duration::from_secs(2))
        .backoff_max(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let orders = name("orders");
    let ttl = Duration::from_secs(3600);
    let a = registry
        .register(instance("orders", "a"), ttl)
        .await
        .unwrap();
    registry
        .register(instance("orders", "b"), ttl)
        .await
        .unwrap();
    let mut watch = registry.watch(&orders).await.unwrap();
    let mut events = take(&mut watch, 2).await;
    etcd.kill();
    etcd.restart().await;
    // before the watch's next attempt (2 s backoff): change, then compact
    registry.deregister(a).await.unwrap();
    registry
        .register(instance("orders", "b").with_weight(3), ttl)
        .await
        .unwrap();
    registry
        .register(instance("orders", "c"), ttl)
        .await
        .unwrap();
    let mut client = registry.client().clone();
    let now = client
        .get("x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client.compact(now, None).await.unwrap();
    let resynced = take(&mut watch, 3).await;
    let seen: Vec<_> = resynced.iter().map(|e| (e.kind, e.instance.id())).collect();
    assert_eq!(
        seen,
        [
            (EventKind::Update, "b"),
            (EventKind::Insert, "c"),
            (EventKind::Remove, "a")
        ]
    );
    assert_eq!(
        resynced[2].revision, now as u64,
        "a compacted deletion: the read's revision"
    );
    // and it watches on from there
    registry
        .register(instance("orders", "d"), ttl)
        .await
        .unwrap();
    let after = take(&mut watch, 1).await;
    assert_eq!(
        (after[0].kind, after[0].instance.id()),
        (EventKind::Insert, "d")
    );
    assert_quiet(&mut watch).await;
    events.extend(resynced);
    events.extend(after);
    let final_state = registry.discover(&orders).await.unwrap();
    let mut state = BTreeMap::new();
    for e in &events {
        match e.kind {
            EventKind::Remove => state.remove(e.instance.id()),
            _ => state.insert(e.instance.id().to_owned(), e.instance.clone()),
        };
    }
    let expected: BTreeMap<_, _> = final_state
        .instances
        .iter()
        .map(|i| (i.id().to_owned(), i.clone()))
        .collect();
    assert_eq!(state, expected);
}

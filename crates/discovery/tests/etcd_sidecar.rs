//! The sidecar on a real etcd: a lease lost in etcd (revoked by another
//! client) is found by the next heartbeat and the app is registered again
//! with a new lease; shutdown deregisters it. Real time, a few seconds.
#![cfg(feature = "etcd")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::etcd::{endpoints, unique_prefix};
use rampart_discovery::health::{HealthCheck, Sidecar, SidecarConfig, SidecarHandle, SidecarState};
use rampart_discovery::registry::{
    EtcdRegistry, EtcdRegistryConfig, Instance, Registry, ServiceName,
};

async fn etcd_registry(prefix: &str) -> EtcdRegistry {
    EtcdRegistryConfig::new()
        .endpoints(endpoints())
        .prefix(prefix)
        .build()
        .await
        .unwrap()
}

/// Waits up to 10 s for the sidecar's state to satisfy `ok`.
async fn wait_for(sidecar: &SidecarHandle, ok: impl Fn(&SidecarState) -> bool) -> SidecarState {
    for _ in 0..200 {
        let state = sidecar.state();
        if ok(&state) {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sidecar never got there: {:?}", sidecar.state());
}

#[tokio::test]
async fn a_lease_lost_in_etcd_is_replaced_by_a_new_registration() {
    // the app: a listener the TCP check connects to
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = app.local_addr().unwrap().port();
    let prefix = unique_prefix("sidecar");
    let registry = Arc::new(etcd_registry(&prefix).await);
    let service: ServiceName = "shop/app".parse().unwrap();
    let instance = Instance::new("app-1", "shop/app", "127.0.0.1", port).unwrap();
    let config = SidecarConfig::new()
        .name("etcd-sidecar")
        .ttl(Duration::from_secs(3))
        .retry_initial(Duration::from_millis(200))
        .check(
            HealthCheck::new()
                .interval(Duration::from_millis(200))
                .jitter(0.0)
                .healthy_threshold(1),
        );
    let sidecar = Sidecar::new(registry.clone(), instance, config)
        .spawn()
        .unwrap();
    let first = wait_for(&sidecar, |s| s.lease.is_some())
        .await
        .lease
        .unwrap();
    let found = registry.discover(&service).await.unwrap();
    assert_eq!(found.instances.len(), 1);

    // another client revokes the lease: etcd drops the key
    let other = etcd_registry(&prefix).await;
    other.deregister(first).await.unwrap();
    assert!(other.discover(&service).await.unwrap().instances.is_empty());

    // the next heartbeat (every second) finds it lost and registers again
    let state = wait_for(&sidecar, |s| s.lease.is_some_and(|l| l != first)).await;
    assert_eq!(state.leases_lost, 1);
    assert_eq!(state.registrations, 2);
    let found = other.discover(&service).await.unwrap();
    assert_eq!(found.instances.len(), 1);
    assert_eq!(found.instances[0].port(), port);

    // shutdown deregisters
    sidecar.shutdown().await.unwrap();
    assert!(other.discover(&service).await.unwrap().instances.is_empty());
    drop(app);
}

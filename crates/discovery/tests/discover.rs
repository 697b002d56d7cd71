//! A registry watch as a `tower::discover::Discover` stream, polled
//! directly.

mod common;

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::instance;
use rampart_discovery::registry::{
    DiscoverChanges, HealthStatus, Instance, MemoryRegistry, Registry, ServiceName, discover,
};
use tower::discover::{Change, Discover};

/// The endpoint "service" a user closure makes: here just its address and
/// weight, enough to see which instance data it was built from.
type Endpoint = (String, u32);

fn make(i: &Instance) -> Endpoint {
    (i.authority(), i.weight())
}

/// Every change ready now, as `(key, Some(endpoint))` for an insert and
/// `(key, None)` for a remove.
async fn ready_changes<D>(d: &mut D) -> Vec<(String, Option<Endpoint>)>
where
    D: Discover<Key = String, Service = Endpoint> + Unpin,
    D::Error: std::fmt::Debug,
{
    let mut out = Vec::new();
    loop {
        let next = poll_fn(|cx| match Pin::new(&mut *d).poll_discover(cx) {
            std::task::Poll::Pending => std::task::Poll::Ready(None),
            std::task::Poll::Ready(c) => std::task::Poll::Ready(Some(c)),
        })
        .await;
        match next {
            Some(Some(change)) => out.push(match change.unwrap() {
                Change::Insert(k, s) => (k, Some(s)),
                Change::Remove(k) => (k, None),
            }),
            Some(None) => panic!("stream ended"),
            None => return out,
        }
    }
}

fn ins(id: &str, weight: u32) -> (String, Option<Endpoint>) {
    (id.to_owned(), Some(("10.0.0.1:8080".to_owned(), weight)))
}

fn rem(id: &str) -> (String, Option<Endpoint>) {
    (id.to_owned(), None)
}

#[tokio::test(start_paused = true)]
async fn inserts_updates_and_removes_by_instance_id() {
    let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
    let ttl = Duration::from_secs(10);
    let orders: ServiceName = "orders".parse().unwrap();
    let a = registry
        .register(instance("orders", "a"), ttl)
        .await
        .unwrap();
    let mut changes = discover(&*registry, &orders, make).await.unwrap();
    // the current set first
    assert_eq!(ready_changes(&mut changes).await, [ins("a", 1)]);

    registry
        .register(instance("orders", "b"), ttl)
        .await
        .unwrap();
    // an update replaces the endpoint under the same key
    let a2 = registry
        .register(instance("orders", "a").with_weight(5), ttl)
        .await
        .unwrap();
    assert!(registry.deregister(a).await.is_err()); // replaced
    registry.deregister(a2).await.unwrap();
    assert_eq!(
        ready_changes(&mut changes).await,
        [ins("b", 1), ins("a", 5), rem("a")]
    );

    // an expiry is a remove
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(ready_changes(&mut changes).await, [rem("b")]);
}

#[tokio::test(start_paused = true)]
async fn unroutable_instances_are_not_inserted() {
    let registry = MemoryRegistry::new();
    let ttl = Duration::from_secs(60);
    let orders: ServiceName = "orders".parse().unwrap();
    let mut changes = DiscoverChanges::new(registry.watch(&orders).await.unwrap(), make);
    let sick = registry
        .register(
            instance("orders", "s").with_health(HealthStatus::Unhealthy),
            ttl,
        )
        .await
        .unwrap();
    registry
        .register(instance("orders", "d").with_weight(0), ttl)
        .await
        .unwrap();
    assert!(ready_changes(&mut changes).await.is_empty());
    // recovering inserts it; falling sick again removes it
    registry
        .register(instance("orders", "s"), ttl)
        .await
        .unwrap();
    registry
        .register(
            instance("orders", "s").with_health(HealthStatus::Unhealthy),
            ttl,
        )
        .await
        .unwrap();
    // removing a never-inserted instance says nothing
    registry.deregister(sick).await.ok();
    assert_eq!(ready_changes(&mut changes).await, [ins("s", 1), rem("s")]);
    // the registry going away ends the stream
    drop(registry);
    let end = poll_fn(|cx| Pin::new(&mut changes).poll_discover(cx)).await;
    assert!(end.is_none());
}

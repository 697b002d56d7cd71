//! The service registry: instances register with a time to live, and
//! callers discover and watch them.
//!
//! - An [`Instance`] is one endpoint of a service: id, [`ServiceName`],
//!   address (an IP address or DNS host name), port, weight, zone,
//!   metadata and [`HealthStatus`]. It is validated when built or decoded
//!   (an empty id, a bad service name, a bad address or port 0 is an
//!   [`InstanceError`] naming the cause), so a registry never holds an
//!   invalid one.
//! - A [`ServiceName`] carries its namespace and group in one string,
//!   `namespace/group/service`; the short forms `group/service` and
//!   `service` are in the `default` namespace and group.
//! - The [`Registry`] trait is object safe (its methods return
//!   [`BoxFuture`]s), so `Arc<dyn Registry>` works: `register` an instance
//!   with a time to live and get a [`LeaseId`], `heartbeat` it, `deregister`
//!   it, `discover` a service's instances at a revision, or `watch` them:
//!   a [`Watch`] yields an [`Event`] (insert, update or remove, with its
//!   revision) for every current instance and then every change, exactly
//!   once and in revision order.
//! - [`MemoryRegistry`] is the embedded backend: leases are timed on the
//!   tokio clock with no polling loop, and its self-preservation
//!   ([`MemoryRegistryConfig::protection_threshold`]) keeps instances whose
//!   leases run out en masse instead of emptying the service.
//! - `EtcdRegistry` (feature `etcd`) keeps instances in etcd, one lease
//!   per registration, and serves the last known instances, flagged stale,
//!   while etcd is unreachable.
//! - Read-only registries take their instances from a source:
//!   [`StaticRegistry`] (a fixed list), [`FileRegistry`] (a TOML or JSON
//!   file, edits applied live) and `DnsRegistry` (feature `dns`: SRV, or A
//!   and AAAA, refreshed on the TTL). They refuse registrations with
//!   [`RegistryError::ReadOnly`], keep `set_health` as an in-memory
//!   overlay, and when their source fails keep the last good set, marked
//!   [`Discovered::stale`], telling watchers with
//!   [`RegistryError::Source`]. The [`list`] module documents the list
//!   format.
//! - [`discover()`] turns a watch into a [`tower::discover::Discover`]
//!   stream ([`DiscoverChanges`]) keyed by instance id, with each
//!   endpoint's service made by a closure, for `tower::balance`.
//!
//! ```
//! use std::time::Duration;
//! use rampart_discovery::registry::{discover, Instance, MemoryRegistry, Registry, ServiceName};
//! use tower::balance::p2c::Balance;
//! use tower::load::Constant;
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let registry = MemoryRegistry::new();
//! let instance = Instance::new("orders-1", "shop/orders", "10.0.0.7", 8080)?.with_zone("eu-1a");
//! let lease = registry.register(instance, Duration::from_secs(30)).await?;
//! registry.heartbeat(lease).await?; // within every 30 s, or it expires
//!
//! // a balancer over the service's endpoints, following the registry
//! let orders: ServiceName = "shop/orders".parse()?;
//! let endpoints = discover(&registry, &orders, |i: &Instance| {
//!     let addr = i.authority();
//!     let endpoint = service_fn(move |req: String| {
//!         let reply = format!("{req} via {addr}");
//!         async move { Ok::<_, BoxError>(reply) }
//!     });
//!     Constant::new(endpoint, 1)
//! })
//! .await?;
//! let client = ServiceBuilder::new().service(Balance::new(endpoints));
//! assert_eq!(client.oneshot("GET /".to_owned()).await?, "GET / via 10.0.0.7:8080");
//!
//! registry.deregister(lease).await?;
//! assert!(registry.discover(&orders).await?.instances.is_empty());
//! # Ok(())
//! # }
//! ```

mod instance;

pub use instance::{
    DEFAULT_GROUP, DEFAULT_NAMESPACE, HealthStatus, Instance, InstanceError, ServiceName,
};
mod discover;
#[cfg(feature = "dns")]
mod dns;
#[cfg(feature = "etcd")]
mod etcd;
mod event;
mod file;
pub mod list;
mod memory;
mod source;
mod static_list;

pub use discover::{DiscoverChanges, discover};
#[cfg(feature = "dns")]
pub use dns::{DnsRegistry, DnsRegistryConfig, DnsService};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdRegistry, EtcdRegistryConfig, STALE, STALE_TOTAL};
pub use event::{Discovered, Event, EventKind, LeaseId, RegistryError, Watch};
pub use file::{FileRegistry, FileRegistryConfig};
pub use list::{EntryProblem, SourceError};
pub use memory::{
    EXPIRED_TOTAL, MemoryRegistry, MemoryRegistryConfig, PROTECTED, PROTECTION_KEPT_TOTAL,
    SERVICE_LABEL,
};
pub use source::SOURCE_ERRORS_TOTAL;
pub use static_list::StaticRegistry;

use std::time::Duration;

pub use rampart_core::BoxFuture;

/// A service registry: instances register with a time to live and keep
/// their lease alive with heartbeats; callers discover a service's
/// instances or watch its changes.
///
/// Every change (a registration, a re-registration of the same instance
/// id, a deregistration, an expiry) gets the next revision of the whole
/// registry.
pub trait Registry: Send + Sync {
    /// Registers `instance` for `ttl`: unless a heartbeat renews the lease
    /// within `ttl`, the instance expires. Registering an instance id the
    /// service already has replaces it (an [`Update`](EventKind::Update))
    /// and revokes the older lease. A zero `ttl` is refused with
    /// [`RegistryError::InvalidTtl`].
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<LeaseId, RegistryError>>;

    /// Renews `lease` for another time to live from now.
    fn heartbeat(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), RegistryError>>;

    /// Removes the instance registered under `lease`.
    fn deregister(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), RegistryError>>;

    /// The instances of `service` now, with the revision they are at.
    fn discover<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Discovered, RegistryError>>;

    /// Sets the health status of instance `id` of `service` (what an
    /// active health check found), returning the revision of the change.
    /// Watchers see an [`Update`](EventKind::Update) when the status
    /// changed; setting the status it already has changes nothing and
    /// returns the instance's current revision. The lease is untouched.
    /// An unknown instance is [`RegistryError::UnknownInstance`].
    fn set_health<'a>(
        &'a self,
        service: &'a ServiceName,
        id: &'a str,
        health: HealthStatus,
    ) -> BoxFuture<'a, Result<u64, RegistryError>>;

    /// Subscribes to `service`: see [`Watch`].
    fn watch<'a>(&'a self, service: &'a ServiceName)
    -> BoxFuture<'a, Result<Watch, RegistryError>>;
}

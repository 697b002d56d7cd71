//! The service registry: instances register with a time to live, and
//! callers discover and watch them.
//!
//! An [`Instance`] is one endpoint of a service (id, [`ServiceName`],
//! address, port, weight, zone, metadata, [`HealthStatus`]); it is
//! validated when built or decoded, so a registry never holds an invalid
//! one.

mod instance;

pub use instance::{
    DEFAULT_GROUP, DEFAULT_NAMESPACE, HealthStatus, Instance, InstanceError, ServiceName,
};
mod event;
mod memory;

pub use event::{Discovered, Event, EventKind, LeaseId, RegistryError, Watch};
pub use memory::{
    EXPIRED_TOTAL, MemoryRegistry, MemoryRegistryConfig, PROTECTED, PROTECTION_KEPT_TOTAL,
    SERVICE_LABEL,
};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed, `Send` future, so that [`Registry`] is object safe and
/// `Arc<dyn Registry>` works.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

    /// Subscribes to `service`: see [`Watch`].
    fn watch<'a>(&'a self, service: &'a ServiceName)
    -> BoxFuture<'a, Result<Watch, RegistryError>>;
}

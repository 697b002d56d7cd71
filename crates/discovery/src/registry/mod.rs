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

//! Active health checks: probe instances over HTTP or TCP, and write what
//! they find to the registry, so that watchers (and the `tower::discover`
//! adapter, which stops routing to unhealthy instances) follow.
//!
//! - A [`HealthCheck`] says what to probe ([`CheckKind::Http`]: a `GET` of
//!   a path, passing on an expected status; [`CheckKind::Tcp`]: a connect),
//!   how often (an interval with jitter) and how many results in a row flip
//!   an instance's status (`healthy_threshold`, `unhealthy_threshold`).
//! - A [`Probe`] is one check of one instance: [`HttpProbe`] and
//!   [`TcpProbe`] are built in; implement the trait for anything else.
//! - A [`HealthChecker`] checks every instance of a service in a
//!   [`Registry`](crate::registry::Registry), each on its own timer, and
//!   calls [`set_health`](crate::registry::Registry::set_health) when an
//!   instance's status changes; its [`HealthCheckerHandle`] reads each
//!   instance's status and counters, and stops it.
//! - A [`Sidecar`] registers a local application, checks it, heartbeats
//!   its lease, marks it unhealthy (or deregisters it) while it fails,
//!   re-registers after a lost lease, and deregisters it on shutdown.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use rampart_discovery::health::{CheckKind, HealthCheck, HealthChecker, HttpCheck};
//! use rampart_discovery::registry::{HealthStatus, Instance, MemoryRegistry, Registry};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Arc::new(MemoryRegistry::new());
//! // nothing listens on this port: every probe fails
//! let instance = Instance::new("orders-1", "shop/orders", "127.0.0.1", 1)?;
//! registry.register(instance, Duration::from_secs(60)).await?;
//!
//! let check = HealthCheck::new()
//!     .kind(CheckKind::Http(HttpCheck::new().path("/healthz")))
//!     .interval(Duration::from_secs(1))
//!     .unhealthy_threshold(2);
//! let checker = HealthChecker::new(registry.clone(), "shop/orders".parse()?, check)
//!     .name("orders")
//!     .spawn()
//!     .await?;
//! # for _ in 0..200 {
//! #     if checker.status("orders-1") == Some(HealthStatus::Unhealthy) { break }
//! #     tokio::time::sleep(Duration::from_millis(100)).await;
//! # }
//! // after two failed probes (about two seconds):
//! assert_eq!(checker.status("orders-1"), Some(HealthStatus::Unhealthy));
//! let found = registry.discover(&"shop/orders".parse()?).await?;
//! assert_eq!(found.instances[0].health(), HealthStatus::Unhealthy);
//! checker.stop();
//! # Ok(()) }
//! ```

mod checker;
mod config;
mod probe;
mod sidecar;
mod state;

pub use checker::{HealthChecker, HealthCheckerHandle, InstanceHealth};
pub use config::{CheckKind, HealthCheck, HttpCheck, StatusRange, TcpCheck};
pub use probe::{HttpProbe, Probe, ProbeError, TcpProbe, probe_for};
pub use sidecar::{OnFailure, Sidecar, SidecarConfig, SidecarHandle, SidecarState};

use std::fmt;

use rampart_core::ConfigError;

use crate::registry::RegistryError;

/// Probes run (labels `name`, `service`, `outcome` = `success` or
/// `failure`).
pub const CHECKS_TOTAL: &str = rampart_core::metric_name!("discovery", "health_checks_total");

/// Status changes decided by the thresholds (labels `name`, `service`,
/// `state` = `healthy` or `unhealthy`).
pub const TRANSITIONS_TOTAL: &str =
    rampart_core::metric_name!("discovery", "health_transitions_total");

/// Why a [`HealthChecker`] or a [`Sidecar`] could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum HealthError {
    /// The configuration is invalid (the field is named).
    Config(ConfigError),
    /// The registry refused the first call (the watch, for a checker).
    Registry(RegistryError),
}

impl fmt::Display for HealthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "health check not started: {e}"),
            Self::Registry(e) => write!(f, "health check not started: {e}"),
        }
    }
}

impl std::error::Error for HealthError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Registry(e) => Some(e),
        }
    }
}

impl From<ConfigError> for HealthError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl From<RegistryError> for HealthError {
    fn from(e: RegistryError) -> Self {
        Self::Registry(e)
    }
}

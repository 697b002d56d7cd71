//! Service registration and discovery, active health checks, and a config
//! center, for Tower services: a registry watch becomes a
//! `tower::discover::Discover` stream a balancer consumes, health checks
//! keep each instance's status in the registry true, and a config key
//! becomes a `watch::Receiver<Arc<T>>` a layer reconfigures from. The
//! embedded backends need no server.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use rampart_discovery::config::{watch_typed, ConfigStore, Format, MemoryConfigStore};
//! use rampart_discovery::registry::{Instance, MemoryRegistry, Registry, ServiceName};
//!
//! #[derive(serde::Deserialize)]
//! struct Limits { max_conns: u32 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The registry: register with a time to live, heartbeat, discover.
//! let registry = MemoryRegistry::new();
//! let lease = registry
//!     .register(Instance::new("orders-1", "shop/orders", "10.0.0.7", 8080)?, Duration::from_secs(30))
//!     .await?;
//! registry.heartbeat(lease).await?;
//! let orders: ServiceName = "shop/orders".parse()?;
//! assert_eq!(registry.discover(&orders).await?.instances.len(), 1);
//!
//! // The config center: versioned keys and typed, live values.
//! let store: Arc<dyn ConfigStore> = Arc::new(MemoryConfigStore::new());
//! store.put("orders/limits", r#"{"max_conns": 64}"#.into()).await?;
//! let limits = watch_typed::<Limits>(store, "orders/limits", Format::Json).await?;
//! assert_eq!(limits.current().max_conns, 64);
//! # Ok(()) }
//! ```
//!
//! | part | module | backends here |
//! |---|---|---|
//! | registry: `Instance`, `Registry` (register with TTL, heartbeat, deregister, discover, watch), self-preservation, `tower::discover` adapter | [`registry`] | [`registry::MemoryRegistry`]; `EtcdRegistry` (feature `etcd`); read-only: [`registry::StaticRegistry`], [`registry::FileRegistry`] (a watched TOML/JSON file), `registry::DnsRegistry` (feature `dns`: SRV, A/AAAA) |
//! | config center: `ConfigStore` (get, put, compare-and-put, delete, history, rollback, watch by prefix or regex), typed watches, gray release | [`config`] | [`config::MemoryConfigStore`], [`config::FileConfigStore`]; `EtcdConfigStore` (feature `etcd`) |
//! | health checks: HTTP and TCP probes (or any [`health::Probe`]) with thresholds and jitter writing each instance's status to a registry; the sidecar helper that registers, checks, heartbeats and deregisters a local app | [`health`] | [`health::HealthChecker`], [`health::Sidecar`] (over any `Arc<dyn Registry>`) |
//!
//! The etcd backends (feature `etcd`) keep serving the last known
//! instances, flagged stale, while etcd is unreachable, and their watches
//! resume from the last revision seen (see `docs/discovery.md`, "etcd").
//! The read-only registries keep their last good set, flagged stale, when
//! their file or DNS server fails.

pub mod config;
#[cfg(feature = "etcd")]
mod etcd;
pub mod health;
pub mod registry;

//! Helpers shared by the health check and sidecar tests: a scripted probe
//! and a registry wrapper that counts calls and can fail like an
//! unreachable backend.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_discovery::health::{Probe, ProbeError};
use rampart_discovery::registry::{
    BoxFuture, Discovered, HealthStatus, Instance, LeaseId, MemoryRegistry, Registry,
    RegistryError, ServiceName, Watch,
};
use tokio::time::Instant;

/// A probe whose result per `address:port` is set by the test (passing
/// unless set), recording every call with its time.
#[derive(Debug, Default)]
pub struct ScriptedProbe {
    failing: Mutex<HashMap<String, bool>>,
    calls: Mutex<Vec<(String, Instant)>>,
}

impl ScriptedProbe {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes probes of `authority` pass (`true`) or fail.
    pub fn set(&self, authority: &str, passing: bool) {
        self.failing
            .lock()
            .unwrap()
            .insert(authority.to_owned(), !passing);
    }

    /// Every call so far: `(authority, when)`.
    pub fn calls(&self) -> Vec<(String, Instant)> {
        self.calls.lock().unwrap().clone()
    }

    /// The times `authority` was probed.
    pub fn times(&self, authority: &str) -> Vec<Instant> {
        self.calls()
            .into_iter()
            .filter(|(a, _)| a == authority)
            .map(|(_, t)| t)
            .collect()
    }

    pub fn count(&self, authority: &str) -> usize {
        self.times(authority).len()
    }
}

impl Probe for ScriptedProbe {
    fn probe<'a>(&'a self, target: &'a Instance) -> BoxFuture<'a, Result<(), ProbeError>> {
        let authority = target.authority();
        self.calls
            .lock()
            .unwrap()
            .push((authority.clone(), Instant::now()));
        let failing = self
            .failing
            .lock()
            .unwrap()
            .get(&authority)
            .copied()
            .unwrap_or(false);
        Box::pin(async move {
            if failing {
                Err(ProbeError::Failed("scripted failure".into()))
            } else {
                Ok(())
            }
        })
    }
}

/// What [`TestRegistry`] was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Register(String, HealthStatus),
    Heartbeat(LeaseId),
    Deregister(LeaseId),
    SetHealth(String, HealthStatus),
}

/// A [`MemoryRegistry`] that records calls and, while `down`, fails every
/// call with [`RegistryError::Backend`] (as an unreachable store would).
#[derive(Debug, Default)]
pub struct TestRegistry {
    pub inner: MemoryRegistry,
    down: AtomicBool,
    calls: Mutex<Vec<(Call, Instant, bool)>>,
}

impl TestRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Every call: what, when, and whether it reached the store.
    pub fn calls(&self) -> Vec<(Call, Instant, bool)> {
        self.calls.lock().unwrap().clone()
    }

    /// The `set_health` calls that reached the store.
    pub fn set_health_calls(&self) -> Vec<(String, HealthStatus)> {
        self.calls()
            .into_iter()
            .filter_map(|(c, _, ok)| match c {
                Call::SetHealth(id, h) if ok => Some((id, h)),
                _ => None,
            })
            .collect()
    }

    fn record(&self, call: Call) -> Result<(), RegistryError> {
        let down = self.down.load(Ordering::SeqCst);
        self.calls
            .lock()
            .unwrap()
            .push((call, Instant::now(), !down));
        if down {
            Err(RegistryError::Backend("registry unreachable".into()))
        } else {
            Ok(())
        }
    }
}

impl Registry for TestRegistry {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<LeaseId, RegistryError>> {
        Box::pin(async move {
            self.record(Call::Register(instance.id().to_owned(), instance.health()))?;
            self.inner.register(instance, ttl).await
        })
    }

    fn heartbeat(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async move {
            self.record(Call::Heartbeat(lease))?;
            self.inner.heartbeat(lease).await
        })
    }

    fn deregister(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async move {
            self.record(Call::Deregister(lease))?;
            self.inner.deregister(lease).await
        })
    }

    fn discover<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Discovered, RegistryError>> {
        self.inner.discover(service)
    }

    fn set_health<'a>(
        &'a self,
        service: &'a ServiceName,
        id: &'a str,
        health: HealthStatus,
    ) -> BoxFuture<'a, Result<u64, RegistryError>> {
        Box::pin(async move {
            self.record(Call::SetHealth(id.to_owned(), health))?;
            self.inner.set_health(service, id, health).await
        })
    }

    fn watch<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Watch, RegistryError>> {
        self.inner.watch(service)
    }
}

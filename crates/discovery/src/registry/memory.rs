//! [`MemoryRegistry`]: the embedded registry, in process, with leases timed
//! by the tokio clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::metrics::InstanceLabels;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{
    BoxFuture, Discovered, Event, EventKind, Instance, LeaseId, Registry, RegistryError,
    ServiceName, Watch,
};

/// The settings of a [`MemoryRegistry`].
///
/// Deserializes from TOML with unknown keys refused:
///
/// ```
/// use rampart_discovery::registry::MemoryRegistryConfig;
///
/// let config: MemoryRegistryConfig = toml::from_str(r#"name = "local""#).unwrap();
/// assert_eq!(config, MemoryRegistryConfig::new().name("local"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryRegistryConfig {
    name: String,
}

impl MemoryRegistryConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry's name, put on every metric as the `name` label and on
    /// every tracing event. Defaults to `""` (no label).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Checks the settings, naming the first field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Validates the settings and builds an empty registry.
    pub fn build(self) -> Result<MemoryRegistry, ConfigError> {
        self.validate()?;
        let labels = InstanceLabels::new(self.name.clone());
        Ok(MemoryRegistry {
            inner: Arc::new(Inner {
                config: self,
                labels,
                state: Mutex::new(State::default()),
            }),
        })
    }
}

/// The embedded registry: everything in this process, nothing to run.
///
/// Each registration has one timer task that sleeps until its lease's
/// deadline on the tokio clock (so paused-time tests drive it); a
/// heartbeat only moves the deadline, and the task, on waking, sleeps again
/// until the new deadline if it moved. There is no polling loop.
///
/// Clones share the registry. When the last clone is dropped, the timers
/// stop and every [`Watch`] ends. [`register`](Registry::register) must be
/// called within a tokio runtime (it spawns the lease's timer).
#[derive(Debug, Clone)]
pub struct MemoryRegistry {
    inner: Arc<Inner>,
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
struct Inner {
    config: MemoryRegistryConfig,
    labels: InstanceLabels,
    state: Mutex<State>,
}

type Sender = mpsc::UnboundedSender<Result<Event, RegistryError>>;

#[derive(Debug, Default)]
struct State {
    revision: u64,
    next_lease: u64,
    services: HashMap<ServiceName, Service>,
    leases: HashMap<LeaseId, (ServiceName, String)>,
}

#[derive(Debug, Default)]
struct Service {
    /// By instance id.
    instances: BTreeMap<String, Entry>,
    watchers: Vec<Sender>,
}

#[derive(Debug)]
struct Entry {
    instance: Instance,
    lease: LeaseId,
    ttl: Duration,
    deadline: Instant,
    /// The revision of the last insert or update.
    revision: u64,
    timer: AbortHandle,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.timer.abort();
    }
}

impl Service {
    /// Sends `event` to every watcher, forgetting those that hung up.
    fn notify(&mut self, revision: u64, kind: EventKind, instance: &Instance) {
        self.watchers.retain(|tx| {
            tx.send(Ok(Event {
                revision,
                kind,
                instance: instance.clone(),
            }))
            .is_ok()
        });
    }

    fn is_unused(&self) -> bool {
        self.instances.is_empty() && self.watchers.is_empty()
    }
}

impl State {
    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    /// Removes the instance behind `lease` and tells its watchers.
    fn remove(&mut self, lease: LeaseId) -> Option<Instance> {
        let (name, id) = self.leases.remove(&lease)?;
        let revision = self.next_revision();
        let service = self.services.get_mut(&name)?;
        let entry = service.instances.remove(&id)?;
        service.notify(revision, EventKind::Remove, &entry.instance);
        if service.is_unused() {
            self.services.remove(&name);
        }
        Some(entry.instance.clone())
    }

    fn entry_mut(&mut self, lease: LeaseId) -> Option<&mut Entry> {
        let (name, id) = self.leases.get(&lease)?;
        self.services.get_mut(name)?.instances.get_mut(id)
    }
}

impl MemoryRegistry {
    /// An empty registry with the default settings.
    pub fn new() -> Self {
        MemoryRegistryConfig::new()
            .build()
            .expect("the default settings are valid")
    }

    /// The settings it was built with.
    pub fn config(&self) -> &MemoryRegistryConfig {
        &self.inner.config
    }

    /// The revision of the latest change (0 before any).
    pub fn revision(&self) -> u64 {
        self.inner.lock().revision
    }

    fn register_now(&self, instance: Instance, ttl: Duration) -> Result<LeaseId, RegistryError> {
        if ttl.is_zero() {
            return Err(RegistryError::InvalidTtl(ttl));
        }
        let deadline = Instant::now() + ttl;
        let mut state = self.inner.lock();
        state.next_lease += 1;
        let lease = LeaseId(state.next_lease);
        let revision = state.next_revision();
        let timer =
            tokio::spawn(run_timer(Arc::downgrade(&self.inner), lease, deadline)).abort_handle();
        let name = instance.service().clone();
        let id = instance.id().to_owned();
        let entry = Entry {
            instance,
            lease,
            ttl,
            deadline,
            revision,
            timer,
        };
        let service = state.services.entry(name.clone()).or_default();
        let kind = match service.instances.insert(id.clone(), entry) {
            Some(old) => {
                let old_lease = old.lease;
                state.leases.remove(&old_lease);
                EventKind::Update
            }
            None => EventKind::Insert,
        };
        let service = state.services.get_mut(&name).expect("inserted above");
        let instance = service.instances[&id].instance.clone();
        service.notify(revision, kind, &instance);
        tracing::debug!(registry = %self.inner.config.name, service = %name, instance = %id, %lease, ?kind, revision, "registered");
        state.leases.insert(lease, (name, id));
        Ok(lease)
    }

    fn heartbeat_now(&self, lease: LeaseId) -> Result<(), RegistryError> {
        let mut state = self.inner.lock();
        let entry = state
            .entry_mut(lease)
            .ok_or(RegistryError::UnknownLease(lease))?;
        entry.deadline = Instant::now() + entry.ttl;
        Ok(())
    }

    fn deregister_now(&self, lease: LeaseId) -> Result<(), RegistryError> {
        let mut state = self.inner.lock();
        let instance = state
            .remove(lease)
            .ok_or(RegistryError::UnknownLease(lease))?;
        tracing::debug!(registry = %self.inner.config.name, service = %instance.service(), instance = %instance.id(), %lease, "deregistered");
        Ok(())
    }

    fn discover_now(&self, name: &ServiceName) -> Discovered {
        let state = self.inner.lock();
        let instances = state
            .services
            .get(name)
            .map(|s| s.instances.values().map(|e| e.instance.clone()).collect())
            .unwrap_or_default();
        Discovered {
            revision: state.revision,
            instances,
        }
    }

    fn watch_now(&self, name: &ServiceName) -> Watch {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.inner.lock();
        let service = state.services.entry(name.clone()).or_default();
        let mut current: Vec<&Entry> = service.instances.values().collect();
        current.sort_by_key(|e| e.revision);
        for e in current {
            // the receiver is in hand: sending cannot fail
            let _ = tx.send(Ok(Event {
                revision: e.revision,
                kind: EventKind::Insert,
                instance: e.instance.clone(),
            }));
        }
        service.watchers.push(tx);
        Watch::from_receiver(rx)
    }
}

/// Instances removed because their lease ran out (labels `name`, `service`).
pub const EXPIRED_TOTAL: &str = rampart_core::metric_name!("discovery", "registry_expired_total");

/// The label carrying a metric's full service name (`namespace/group/service`).
pub const SERVICE_LABEL: &str = "service";

impl Inner {
    fn service_labels(&self, name: &ServiceName) -> Vec<metrics::Label> {
        let mut labels = self.labels.to_vec();
        labels.push(metrics::Label::new(SERVICE_LABEL, name.to_string()));
        labels
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called by a lease's timer at `deadline`: the next deadline to sleep
    /// until, or `None` when the timer's work is done.
    fn on_deadline(&self, lease: LeaseId) -> Option<Instant> {
        let mut state = self.lock();
        let deadline = state.entry_mut(lease)?.deadline;
        if deadline > Instant::now() {
            return Some(deadline);
        }
        if let Some(instance) = state.remove(lease) {
            tracing::info!(registry = %self.config.name, service = %instance.service(), instance = %instance.id(), %lease, "lease expired");
            metrics::counter!(EXPIRED_TOTAL, self.service_labels(instance.service())).increment(1);
        }
        None
    }
}

/// A lease's timer: sleeps until the deadline, and again while heartbeats
/// have moved it.
async fn run_timer(inner: Weak<Inner>, lease: LeaseId, mut deadline: Instant) {
    loop {
        tokio::time::sleep_until(deadline).await;
        let Some(inner) = inner.upgrade() else { return };
        match inner.on_deadline(lease) {
            Some(next) => deadline = next,
            None => return,
        }
    }
}

impl Registry for MemoryRegistry {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<LeaseId, RegistryError>> {
        Box::pin(async move { self.register_now(instance, ttl) })
    }

    fn heartbeat(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async move { self.heartbeat_now(lease) })
    }

    fn deregister(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async move { self.deregister_now(lease) })
    }

    fn discover<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Discovered, RegistryError>> {
        Box::pin(async move { Ok(self.discover_now(service)) })
    }

    fn watch<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Watch, RegistryError>> {
        Box::pin(async move { Ok(self.watch_now(service)) })
    }
}

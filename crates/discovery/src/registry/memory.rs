//! [`MemoryRegistry`]: the embedded registry, in process, with leases timed
//! by the tokio clock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;
use rampart_core::metrics::InstanceLabels;
use serde::Deserialize;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::source::Watchers;
use super::{
    BoxFuture, Discovered, EventKind, HealthStatus, Instance, LeaseId, Registry, RegistryError,
    ServiceName, Watch,
};

/// The settings of a [`MemoryRegistry`].
///
/// Deserializes from TOML with every field optional, durations as `"60s"`
/// (an integer is milliseconds) and unknown keys refused:
///
/// ```
/// use rampart_discovery::registry::MemoryRegistryConfig;
/// use std::time::Duration;
///
/// let config: MemoryRegistryConfig = toml::from_str(r#"
///     name = "local"
///     protection_threshold = 0.85
///     protection_window = "2m"
/// "#).unwrap();
/// assert_eq!(config, MemoryRegistryConfig::new()
///     .name("local")
///     .protection_threshold(0.85)
///     .protection_window(Duration::from_secs(120)));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryRegistryConfig {
    name: String,
    protection_threshold: f64,
    #[serde(with = "rampart_core::duration")]
    protection_window: Duration,
}

impl Default for MemoryRegistryConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            protection_threshold: 0.0,
            protection_window: Duration::from_secs(60),
        }
    }
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

    /// The self-preservation threshold: the least share of a service's
    /// instances that lease expiry may leave (see
    /// [`MemoryRegistry`]'s "Self-preservation" for the exact rule). Must be
    /// within `0.0..=1.0`; 0 turns self-preservation off. Defaults to 0 (off,
    /// as in Nacos); Eureka's 0.85 suits services of many instances, since
    /// with it a service of fewer than 7 instances keeps even one dead
    /// instance until its operator clears it.
    pub fn protection_threshold(mut self, threshold: f64) -> Self {
        self.protection_threshold = threshold;
        self
    }

    /// How long an expiry counts against the threshold. Must be longer
    /// than zero. Defaults to 60 s.
    pub fn protection_window(mut self, window: Duration) -> Self {
        self.protection_window = window;
        self
    }

    /// Checks the settings, naming the first field at fault:
    /// `protection_threshold` outside `0.0..=1.0` (or NaN), or a zero
    /// `protection_window`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::ratio("protection_threshold", self.protection_threshold)?;
        validate::non_zero_duration("protection_window", self.protection_window)?;
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
/// # Self-preservation
///
/// With a [`protection_threshold`](MemoryRegistryConfig::protection_threshold)
/// `t` above 0, a lease that runs out does not always remove its instance
/// (Eureka's self-preservation, Nacos's protection threshold): a network
/// partition between the instances and the registry must not empty a
/// service whose instances are alive. The exact rule, applied when a lease
/// runs out, for its service:
///
/// - `R`: instances registered now (including lapsed ones kept by this rule),
/// - `L`: lapsed instances (lease run out, kept), counting this one,
/// - `E`: instances expired by lease within the last
///   [`protection_window`](MemoryRegistryConfig::protection_window);
///
/// the instance is removed if `R - L >= t × (R + E)`, that is if expiring
/// it leaves at least the share `t` of the service's instances of the
/// window alive. Otherwise it is kept (still discovered, no event) and
/// marked lapsed, and the service becomes *protected*:
/// [`is_protected`](MemoryRegistry::is_protected) says so, the gauge
/// [`PROTECTED`] is 1, [`PROTECTION_KEPT_TOTAL`] counts kept instances, and
/// a `warn` event is logged. Deregistration is never held back.
///
/// Expiry resumes on events, never by polling: after each heartbeat,
/// registration or deregistration in a protected service, the rule is
/// applied again to each lapsed instance (earliest deadline first), and
/// those it allows are removed. A heartbeat of a lapsed instance renews it.
/// Once no lapsed instance is left, the protection lifts (gauge 0, `info`
/// event). An operator can also lift it with
/// [`clear_protection`](MemoryRegistry::clear_protection), which removes
/// the lapsed instances and forgets the window's expiries.
///
/// For example, with `t = 0.85` and 10 instances whose heartbeats all stop,
/// the first to run out is removed (`9 >= 8.5`); the other nine are kept
/// (`8 < 8.5`, and fewer after). When their heartbeats come back, each one
/// renews; if only 6 come back, the other 3 stay (`6 < 8.5`) until an
/// operator clears them.
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
    watchers: Watchers,
    /// When instances were expired, within the protection window (only
    /// kept while self-preservation is on).
    expired: VecDeque<Instant>,
    /// Some lapsed instance is being kept.
    protected: bool,
}

#[derive(Debug)]
struct Entry {
    instance: Instance,
    lease: LeaseId,
    ttl: Duration,
    deadline: Instant,
    /// The revision of the last insert or update.
    revision: u64,
    /// Its lease ran out, and self-preservation keeps it.
    lapsed: bool,
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
        self.watchers.notify(revision, kind, instance);
    }

    /// Nothing left to keep: no instance, no watcher, no protection to
    /// lift (a protected service stays until its protection is lifted, so
    /// the lift is reported).
    fn is_unused(&self) -> bool {
        self.instances.is_empty() && self.watchers.is_empty() && !self.protected
    }

    /// The self-preservation rule: may instance `id`, whose lease ran out,
    /// be removed?
    fn may_expire(&mut self, id: &str, now: Instant, config: &MemoryRegistryConfig) -> bool {
        let threshold = config.protection_threshold;
        if threshold == 0.0 {
            return true;
        }
        if let Some(start) = now.checked_sub(config.protection_window) {
            while self.expired.front().is_some_and(|t| *t <= start) {
                self.expired.pop_front();
            }
        }
        let registered = self.instances.len();
        let lapsed = self
            .instances
            .values()
            .filter(|e| e.lapsed || e.instance.id() == id)
            .count();
        let seen = registered + self.expired.len();
        (registered - lapsed) as f64 >= threshold * seen as f64
    }

    /// Lapsed instances, earliest deadline first.
    fn lapsed(&self) -> Vec<LeaseId> {
        let mut lapsed: Vec<&Entry> = self.instances.values().filter(|e| e.lapsed).collect();
        lapsed.sort_by_key(|e| e.deadline);
        lapsed.iter().map(|e| e.lease).collect()
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
            lapsed: false,
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
        state.leases.insert(lease, (name.clone(), id));
        self.inner.reconsider(&mut state, &name);
        Ok(lease)
    }

    fn heartbeat_now(&self, lease: LeaseId) -> Result<(), RegistryError> {
        let mut state = self.inner.lock();
        let entry = state
            .entry_mut(lease)
            .ok_or(RegistryError::UnknownLease(lease))?;
        entry.deadline = Instant::now() + entry.ttl;
        if entry.lapsed {
            // its timer ended when it lapsed: start another
            entry.lapsed = false;
            let deadline = entry.deadline;
            entry.timer = tokio::spawn(run_timer(Arc::downgrade(&self.inner), lease, deadline))
                .abort_handle();
        }
        let name = state.leases[&lease].0.clone();
        self.inner.reconsider(&mut state, &name);
        Ok(())
    }

    fn deregister_now(&self, lease: LeaseId) -> Result<(), RegistryError> {
        let mut state = self.inner.lock();
        let instance = state
            .remove(lease)
            .ok_or(RegistryError::UnknownLease(lease))?;
        tracing::debug!(registry = %self.inner.config.name, service = %instance.service(), instance = %instance.id(), %lease, "deregistered");
        self.inner.reconsider(&mut state, instance.service());
        Ok(())
    }

    fn set_health_now(
        &self,
        name: &ServiceName,
        id: &str,
        health: HealthStatus,
    ) -> Result<u64, RegistryError> {
        let mut state = self.inner.lock();
        let unknown = || RegistryError::UnknownInstance {
            service: name.clone(),
            id: id.to_owned(),
        };
        let entry = state
            .services
            .get(name)
            .and_then(|s| s.instances.get(id))
            .ok_or_else(unknown)?;
        if entry.instance.health() == health {
            return Ok(entry.revision);
        }
        let revision = state.next_revision();
        let service = state.services.get_mut(name).ok_or_else(unknown)?;
        let entry = service.instances.get_mut(id).ok_or_else(unknown)?;
        entry.instance = entry.instance.clone().with_health(health);
        entry.revision = revision;
        let instance = entry.instance.clone();
        service.notify(revision, EventKind::Update, &instance);
        tracing::debug!(registry = %self.inner.config.name, service = %name, instance = %id, ?health, revision, "health set");
        Ok(revision)
    }

    /// Whether self-preservation is keeping lapsed instances of `service`.
    pub fn is_protected(&self, service: &ServiceName) -> bool {
        self.inner
            .lock()
            .services
            .get(service)
            .is_some_and(|s| s.protected)
    }

    /// Every service self-preservation is protecting now.
    pub fn protected_services(&self) -> Vec<ServiceName> {
        let state = self.inner.lock();
        let mut names: Vec<_> = state
            .services
            .iter()
            .filter(|(_, s)| s.protected)
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// The operator's override: removes every lapsed instance of `service`
    /// that self-preservation kept, forgets its recent expiries (the rule
    /// starts afresh), and lifts the protection. Returns how many instances
    /// were removed.
    pub fn clear_protection(&self, service: &ServiceName) -> usize {
        let mut state = self.inner.lock();
        let Some(svc) = state.services.get(service) else {
            return 0;
        };
        let lapsed = svc.lapsed();
        for &lease in &lapsed {
            self.inner.expire(&mut state, lease, Instant::now());
        }
        if let Some(svc) = state.services.get_mut(service) {
            svc.expired.clear();
        }
        if !lapsed.is_empty() {
            tracing::warn!(registry = %self.inner.config.name, %service, removed = lapsed.len(), "self-preservation cleared by operator");
            self.inner.lift_protection(&mut state, service);
        }
        lapsed.len()
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
            stale: false,
        }
    }

    fn watch_now(&self, name: &ServiceName) -> Watch {
        let mut state = self.inner.lock();
        let service = state.services.entry(name.clone()).or_default();
        let current = service
            .instances
            .values()
            .map(|e| (e.revision, &e.instance));
        service.watchers.subscribe(current)
    }
}

/// Instances removed because their lease ran out (labels `name`, `service`).
pub const EXPIRED_TOTAL: &str = rampart_core::metric_name!("discovery", "registry_expired_total");

/// Instances self-preservation kept although their lease ran out (labels
/// `name`, `service`).
pub const PROTECTION_KEPT_TOTAL: &str =
    rampart_core::metric_name!("discovery", "registry_protection_kept_total");

/// 1 while a service is protected by self-preservation, else 0 (labels
/// `name`, `service`).
pub const PROTECTED: &str = rampart_core::metric_name!("discovery", "registry_protected");

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
    /// until, or `None` when the timer's work is done (the instance expired,
    /// or lapsed and is kept).
    fn on_deadline(&self, lease: LeaseId) -> Option<Instant> {
        let mut state = self.lock();
        let now = Instant::now();
        let deadline = state.entry_mut(lease)?.deadline;
        if deadline > now {
            return Some(deadline);
        }
        let (name, id) = state.leases[&lease].clone();
        let service = state.services.get_mut(&name)?;
        if service.may_expire(&id, now, &self.config) {
            self.expire(&mut state, lease, now);
        } else {
            service.instances.get_mut(&id)?.lapsed = true;
            metrics::counter!(PROTECTION_KEPT_TOTAL, self.service_labels(&name)).increment(1);
            tracing::warn!(registry = %self.config.name, service = %name, instance = %id, %lease, "lease expired, instance kept by self-preservation");
            if !service.protected {
                service.protected = true;
                metrics::gauge!(PROTECTED, self.service_labels(&name)).set(1.0);
                tracing::warn!(registry = %self.config.name, service = %name, threshold = self.config.protection_threshold, "self-preservation on: expiring more instances would leave too few");
            }
        }
        None
    }

    /// Removes the instance behind the run-out `lease`, counting it.
    fn expire(&self, state: &mut State, lease: LeaseId, now: Instant) {
        let Some((name, _)) = state.leases.get(&lease) else {
            return;
        };
        if self.config.protection_threshold > 0.0
            && let Some(service) = state.services.get_mut(name)
        {
            service.expired.push_back(now);
        }
        if let Some(instance) = state.remove(lease) {
            tracing::info!(registry = %self.config.name, service = %instance.service(), instance = %instance.id(), %lease, "lease expired");
            metrics::counter!(EXPIRED_TOTAL, self.service_labels(instance.service())).increment(1);
        }
    }

    /// After a change to a protected service, expires the lapsed instances
    /// the rule now allows (earliest deadline first), and lifts the
    /// protection once none is left.
    fn reconsider(&self, state: &mut State, name: &ServiceName) {
        let Some(service) = state.services.get(name) else {
            return;
        };
        if !service.protected {
            return;
        }
        let now = Instant::now();
        for lease in service.lapsed() {
            let Some((_, id)) = state.leases.get(&lease).cloned() else {
                continue;
            };
            let Some(service) = state.services.get_mut(name) else {
                return;
            };
            if service.may_expire(&id, now, &self.config) {
                self.expire(state, lease, now);
            }
        }
        if state
            .services
            .get(name)
            .is_none_or(|s| s.instances.values().all(|e| !e.lapsed))
        {
            self.lift_protection(state, name);
        }
    }

    fn lift_protection(&self, state: &mut State, name: &ServiceName) {
        let Some(service) = state.services.get_mut(name) else {
            return;
        };
        if !service.protected {
            return;
        }
        service.protected = false;
        if service.is_unused() {
            state.services.remove(name);
        }
        metrics::gauge!(PROTECTED, self.service_labels(name)).set(0.0);
        tracing::info!(registry = %self.config.name, service = %name, "self-preservation off");
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

    fn set_health<'a>(
        &'a self,
        service: &'a ServiceName,
        id: &'a str,
        health: HealthStatus,
    ) -> BoxFuture<'a, Result<u64, RegistryError>> {
        Box::pin(async move { self.set_health_now(service, id, health) })
    }

    fn watch<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Watch, RegistryError>> {
        Box::pin(async move { Ok(self.watch_now(service)) })
    }
}

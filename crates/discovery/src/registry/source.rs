//! What the read-only registries ([`StaticRegistry`](super::StaticRegistry),
//! [`FileRegistry`](super::FileRegistry) and the DNS registry) share: the
//! instances a source last gave, per service, with a health overlay, turned
//! into revisions, snapshots and watch diffs.
//!
//! A source (a list, a file, DNS answers) only ever hands over a whole new
//! set of a service's instances; [`Snapshot::replace`] diffs it against the
//! current set and gives every insert, update and remove the next revision
//! of the registry, in one place, so the three backends keep the memory
//! registry's watch contract (snapshot inserts, then every change exactly
//! once, in revision order) without each writing it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rampart_core::metrics::InstanceLabels;
use tokio::sync::mpsc;

use super::{
    Discovered, Event, EventKind, HealthStatus, Instance, RegistryError, SERVICE_LABEL,
    ServiceName, SourceError, Watch,
};

/// Failures of a read-only registry's source: a file that does not parse or
/// went missing, a DNS lookup that failed (labels `name`, and `service` for
/// DNS). Each keeps the last good instances live, marked stale.
pub const SOURCE_ERRORS_TOTAL: &str =
    rampart_core::metric_name!("discovery", "registry_source_errors_total");

type Sender = mpsc::UnboundedSender<Result<Event, RegistryError>>;

// === impl Watchers ===

/// The watchers of one service.
#[derive(Debug, Default)]
pub(crate) struct Watchers(Vec<Sender>);

impl Watchers {
    /// Sends `event` to every watcher, forgetting those that hung up.
    pub(crate) fn notify(&mut self, revision: u64, kind: EventKind, instance: &Instance) {
        self.0.retain(|tx| {
            tx.send(Ok(Event {
                revision,
                kind,
                instance: instance.clone(),
            }))
            .is_ok()
        });
    }

    /// Sends `error` to every watcher; the watches go on.
    pub(crate) fn report(&mut self, error: &Arc<SourceError>) {
        self.0.retain(|tx| {
            tx.send(Err(RegistryError::Source(Arc::clone(error))))
                .is_ok()
        });
    }

    /// A new watch that first gets an insert of every `(revision,
    /// instance)` of `current`, in revision order, then what is notified.
    pub(crate) fn subscribe<'a>(
        &mut self,
        current: impl IntoIterator<Item = (u64, &'a Instance)>,
    ) -> Watch {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut current: Vec<_> = current.into_iter().collect();
        current.sort_by_key(|(revision, _)| *revision);
        for (revision, instance) in current {
            // the receiver is in hand: sending cannot fail
            let _ = tx.send(Ok(Event {
                revision,
                kind: EventKind::Insert,
                instance: instance.clone(),
            }));
        }
        self.0.push(tx);
        Watch::from_receiver(rx)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// === impl Snapshot ===

/// The instances of every service of a read-only registry, at a revision.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    revision: u64,
    services: HashMap<ServiceName, Service>,
}

#[derive(Debug, Default)]
struct Service {
    /// By instance id.
    instances: BTreeMap<String, Entry>,
    watchers: Watchers,
    /// The source failed since it last gave this service's instances.
    stale: bool,
}

#[derive(Debug)]
struct Entry {
    /// As the source gave it.
    source: Instance,
    /// The health set with `set_health`, over the source's.
    health: Option<HealthStatus>,
    /// `source` with `health` applied: what is discovered and watched.
    current: Instance,
    /// The revision of its last insert or update.
    revision: u64,
}

impl Entry {
    fn new(source: Instance, health: Option<HealthStatus>, revision: u64) -> Self {
        let current = match health {
            Some(h) => source.clone().with_health(h),
            None => source.clone(),
        };
        Self {
            source,
            health,
            current,
            revision,
        }
    }
}

impl Snapshot {
    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    /// Makes `instances` (ids unique) the set of `name`, telling its
    /// watchers the differences, and clears its stale mark. An instance
    /// still present keeps the health set on it. Returns how many changes
    /// there were.
    pub(crate) fn replace(&mut self, name: &ServiceName, instances: Vec<Instance>) -> usize {
        let service = self.services.entry(name.clone()).or_default();
        service.stale = false;
        let mut next: BTreeMap<String, Instance> = instances
            .into_iter()
            .map(|i| (i.id().to_owned(), i))
            .collect();
        let removed: Vec<String> = service
            .instances
            .keys()
            .filter(|id| !next.contains_key(*id))
            .cloned()
            .collect();
        let mut changes = 0;
        for id in removed {
            let revision = self.next_revision();
            let service = self.services.get_mut(name).expect("present above");
            let entry = service.instances.remove(&id).expect("listed above");
            service
                .watchers
                .notify(revision, EventKind::Remove, &entry.current);
            changes += 1;
        }
        for (id, instance) in std::mem::take(&mut next) {
            let service = self.services.get_mut(name).expect("present above");
            let (kind, health) = match service.instances.get(&id) {
                Some(old) if old.source == instance => continue,
                Some(old) => (EventKind::Update, old.health),
                None => (EventKind::Insert, None),
            };
            let revision = self.next_revision();
            let service = self.services.get_mut(name).expect("present above");
            let entry = Entry::new(instance, health, revision);
            service.watchers.notify(revision, kind, &entry.current);
            service.instances.insert(id, entry);
            changes += 1;
        }
        self.forget_if_unused(name);
        changes
    }

    /// Makes `sets` the instances of every service: services not in it
    /// are emptied. Returns how many changes there were.
    pub(crate) fn replace_all(&mut self, mut sets: BTreeMap<ServiceName, Vec<Instance>>) -> usize {
        let mut names: Vec<ServiceName> = self.services.keys().cloned().collect();
        names.extend(sets.keys().cloned());
        names.sort();
        names.dedup();
        names
            .iter()
            .map(|name| self.replace(name, sets.remove(name).unwrap_or_default()))
            .sum()
    }

    /// Marks `name` (or, with `None`, every service) stale: its instances
    /// are the last known, not a fresh answer.
    pub(crate) fn mark_stale(&mut self, name: Option<&ServiceName>) {
        match name {
            Some(name) => self.services.entry(name.clone()).or_default().stale = true,
            None => self.services.values_mut().for_each(|s| s.stale = true),
        }
    }

    /// Clears the stale mark of every service.
    pub(crate) fn clear_stale(&mut self) {
        self.services.values_mut().for_each(|s| s.stale = false);
    }

    /// Sends `error` to the watchers of `name` (or, with `None`, of every
    /// service).
    pub(crate) fn report(&mut self, name: Option<&ServiceName>, error: SourceError) {
        let error = &Arc::new(error);
        match name {
            Some(name) => {
                if let Some(s) = self.services.get_mut(name) {
                    s.watchers.report(error);
                }
            }
            None => self
                .services
                .values_mut()
                .for_each(|s| s.watchers.report(error)),
        }
    }

    pub(crate) fn discover(&self, name: &ServiceName) -> Discovered {
        let service = self.services.get(name);
        Discovered {
            revision: self.revision,
            instances: service
                .map(|s| s.instances.values().map(|e| e.current.clone()).collect())
                .unwrap_or_default(),
            stale: service.is_some_and(|s| s.stale),
        }
    }

    pub(crate) fn watch(&mut self, name: &ServiceName) -> Watch {
        let service = self.services.entry(name.clone()).or_default();
        let current = service.instances.values().map(|e| (e.revision, &e.current));
        service.watchers.subscribe(current)
    }

    /// Sets the health overlay of instance `id` of `name`: see
    /// [`Registry::set_health`](super::Registry::set_health).
    pub(crate) fn set_health(
        &mut self,
        name: &ServiceName,
        id: &str,
        health: HealthStatus,
    ) -> Result<u64, RegistryError> {
        let unknown = || RegistryError::UnknownInstance {
            service: name.clone(),
            id: id.to_owned(),
        };
        let entry = self
            .services
            .get(name)
            .and_then(|s| s.instances.get(id))
            .ok_or_else(unknown)?;
        if entry.current.health() == health {
            return Ok(entry.revision);
        }
        let revision = self.next_revision();
        let service = self.services.get_mut(name).ok_or_else(unknown)?;
        let entry = service.instances.get_mut(id).ok_or_else(unknown)?;
        *entry = Entry::new(entry.source.clone(), Some(health), revision);
        service
            .watchers
            .notify(revision, EventKind::Update, &entry.current);
        Ok(revision)
    }

    /// The revision of the latest change (0 before any).
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    fn forget_if_unused(&mut self, name: &ServiceName) {
        if self
            .services
            .get(name)
            .is_some_and(|s| s.instances.is_empty() && s.watchers.is_empty() && !s.stale)
        {
            self.services.remove(name);
        }
    }
}

// === impl Source ===

/// A [`Snapshot`] behind a lock, with the registry's name and metric
/// labels.
#[derive(Debug)]
pub(crate) struct Source {
    name: String,
    labels: InstanceLabels,
    snapshot: Mutex<Snapshot>,
}

impl Source {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            labels: InstanceLabels::new(name.clone()),
            name,
            snapshot: Mutex::new(Snapshot::default()),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Snapshot> {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a source failure in [`SOURCE_ERRORS_TOTAL`].
    pub(crate) fn count_error(&self, service: Option<&ServiceName>) {
        let mut labels = self.labels.to_vec();
        if let Some(service) = service {
            labels.push(metrics::Label::new(SERVICE_LABEL, service.to_string()));
        }
        metrics::counter!(SOURCE_ERRORS_TOTAL, labels).increment(1);
    }
}

/// Implements [`Registry`](super::Registry) for a read-only registry type
/// whose `source()` method returns its [`Source`]: `register`,
/// `heartbeat` and `deregister` fail with
/// [`RegistryError::ReadOnly`]; the rest reads or overlays the snapshot.
macro_rules! read_only_registry {
    ($ty:ty, $backend:literal) => {
        impl $crate::registry::Registry for $ty {
            fn register(
                &self,
                _instance: $crate::registry::Instance,
                _ttl: ::std::time::Duration,
            ) -> $crate::registry::BoxFuture<
                '_,
                Result<$crate::registry::LeaseId, $crate::registry::RegistryError>,
            > {
                Box::pin(async {
                    Err($crate::registry::RegistryError::ReadOnly { backend: $backend })
                })
            }

            fn heartbeat(
                &self,
                _lease: $crate::registry::LeaseId,
            ) -> $crate::registry::BoxFuture<'_, Result<(), $crate::registry::RegistryError>>
            {
                Box::pin(async {
                    Err($crate::registry::RegistryError::ReadOnly { backend: $backend })
                })
            }

            fn deregister(
                &self,
                _lease: $crate::registry::LeaseId,
            ) -> $crate::registry::BoxFuture<'_, Result<(), $crate::registry::RegistryError>>
            {
                Box::pin(async {
                    Err($crate::registry::RegistryError::ReadOnly { backend: $backend })
                })
            }

            fn discover<'a>(
                &'a self,
                service: &'a $crate::registry::ServiceName,
            ) -> $crate::registry::BoxFuture<
                'a,
                Result<$crate::registry::Discovered, $crate::registry::RegistryError>,
            > {
                Box::pin(async move { Ok(self.source().lock().discover(service)) })
            }

            fn set_health<'a>(
                &'a self,
                service: &'a $crate::registry::ServiceName,
                id: &'a str,
                health: $crate::registry::HealthStatus,
            ) -> $crate::registry::BoxFuture<'a, Result<u64, $crate::registry::RegistryError>>
            {
                Box::pin(async move {
                    let revision = self.source().lock().set_health(service, id, health)?;
                    ::tracing::debug!(registry = %self.source().name(), %service, instance = %id, ?health, revision, "health set");
                    Ok(revision)
                })
            }

            fn watch<'a>(
                &'a self,
                service: &'a $crate::registry::ServiceName,
            ) -> $crate::registry::BoxFuture<
                'a,
                Result<$crate::registry::Watch, $crate::registry::RegistryError>,
            > {
                Box::pin(async move { Ok(self.source().lock().watch(service)) })
            }
        }
    };
}

pub(crate) use read_only_registry;

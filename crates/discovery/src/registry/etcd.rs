//! [`EtcdRegistry`]: the registry on etcd v3, one lease per registration.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use rampart_core::ConfigError;
use rampart_core::metrics::InstanceLabels;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::{
    BoxFuture, Discovered, Event, EventKind, HealthStatus, Instance, LeaseId, Registry,
    RegistryError, SERVICE_LABEL, ServiceName, Watch,
};
use crate::etcd::{Backoff, KeyEvent, Resume, Sink, list, timed};

/// The settings of an [`EtcdRegistry`].
///
/// Deserializes from TOML with every field optional, durations as `"5s"`
/// (an integer is milliseconds) and unknown keys refused:
///
/// ```
/// use rampart_discovery::registry::EtcdRegistryConfig;
/// use std::time::Duration;
///
/// let config: EtcdRegistryConfig = toml::from_str(r#"
///     endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
///     prefix = "/shop/registry"
///     name = "shop"
///     request_timeout = "2s"
/// "#).unwrap();
/// assert_eq!(config, EtcdRegistryConfig::new()
///     .endpoints(["http://10.0.0.1:2379", "http://10.0.0.2:2379"])
///     .prefix("/shop/registry")
///     .name("shop")
///     .request_timeout(Duration::from_secs(2)));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdRegistryConfig {
    endpoints: Vec<String>,
    prefix: String,
    name: String,
    #[serde(with = "rampart_core::duration")]
    connect_timeout: Duration,
    #[serde(with = "rampart_core::duration")]
    request_timeout: Duration,
    #[serde(with = "rampart_core::duration")]
    backoff_min: Duration,
    #[serde(with = "rampart_core::duration")]
    backoff_max: Duration,
}

impl Default for EtcdRegistryConfig {
    fn default() -> Self {
        let (endpoints, connect_timeout, request_timeout, backoff_min, backoff_max) =
            crate::etcd::default_connection();
        Self {
            endpoints,
            prefix: "/rampart/registry".to_owned(),
            name: String::new(),
            connect_timeout,
            request_timeout,
            backoff_min,
            backoff_max,
        }
    }
}

impl EtcdRegistryConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key prefix every instance is stored under (trailing `/`
    /// ignored). Defaults to `"/rampart/registry"`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The registry's name, put on every metric as the `name` label and on
    /// every tracing event. Defaults to `""` (no label).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    crate::etcd::connection_setters!();

    /// Checks the settings, naming the first field at fault: no endpoint
    /// or one that is not an `http(s)://` URL, an empty `prefix`, a zero
    /// timeout or `backoff_min`, or `backoff_max` below `backoff_min`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.connection().validate()?;
        crate::etcd::normalize_prefix(&self.prefix)?;
        Ok(())
    }

    /// Validates the settings and makes the registry. The connection is
    /// made lazily: an etcd that is down now is not an error (calls fail,
    /// or are served stale, until it is up).
    pub async fn build(self) -> Result<EtcdRegistry, ConfigError> {
        self.validate()?;
        let client = self.connection().connect().await?;
        let prefix = crate::etcd::normalize_prefix(&self.prefix)?;
        let labels = InstanceLabels::new(self.name.clone());
        let (shutdown, _) = watch::channel(());
        Ok(EtcdRegistry {
            inner: Arc::new(Inner {
                client,
                prefix,
                labels,
                config: self,
                known: Mutex::new(HashMap::new()),
                shutdown,
            }),
        })
    }
}

/// Calls to [`Registry::discover`] answered from the last known instances
/// because etcd could not be reached (labels `name`, `service`).
pub const STALE_TOTAL: &str = rampart_core::metric_name!("discovery", "registry_stale_total");

/// 1 while a service's last [`Registry::discover`] was answered stale, 0
/// once etcd answered again (labels `name`, `service`).
pub const STALE: &str = rampart_core::metric_name!("discovery", "registry_stale");

/// The registry on etcd v3: instances registered by any process sharing
/// the etcd cluster and key prefix.
///
/// # Layout
///
/// Each instance is one key, `{prefix}/{namespace}/{group}/{service}/{id}`,
/// whose value is the JSON [`Instance`], attached to one etcd lease per
/// registration (its time to live rounded *up* to whole seconds; etcd
/// raises a lease below its minimum, about 2 s). The [`LeaseId`] is the
/// etcd lease id.
///
/// - [`heartbeat`](Registry::heartbeat) is one keep-alive round trip; a
///   lease etcd no longer knows is [`RegistryError::UnknownLease`].
/// - Registering an instance id again replaces the value and revokes the
///   older lease; [`deregister`](Registry::deregister) revokes the lease
///   (deleting the key); a lease that runs out deletes it too.
/// - [`set_health`](Registry::set_health) rewrites the value keeping the
///   key's lease, in a transaction guarded by the key's `mod_revision`
///   (retried if another writer got in between).
///
/// Revisions are etcd revisions: an event's is the `mod_revision` of the
/// change, [`discover`](Registry::discover)'s is the read's header
/// revision.
///
/// # Watches
///
/// A [`Watch`] starts with an insert per instance (each at its own
/// `mod_revision`, oldest first), read at one revision `R`, then watches
/// the service's prefix from `R + 1`. When the stream fails or etcd goes
/// away it reconnects with exponential backoff
/// ([`backoff_min`](EtcdRegistryConfig::backoff_min) to
/// [`backoff_max`](EtcdRegistryConfig::backoff_max)) and resumes from the
/// last revision delivered + 1, so no event is missed or repeated. If etcd
/// has compacted that revision away, the watch re-reads the service and
/// delivers the difference against what it had (inserts and updates at
/// their own revisions, removals at the read's revision, since the
/// revision of a compacted deletion is unknown), then watches on.
///
/// # When etcd is down
///
/// - [`discover`](Registry::discover) answers with the last instances it
///   read for that service, with [`Discovered::stale`] set, counted in
///   [`STALE_TOTAL`] and flagged by the [`STALE`] gauge; it fails only for
///   a service it never read.
/// - Watches keep their state and resynchronise when etcd is back.
/// - Registration, heartbeats, deregistration and health changes fail
///   with [`RegistryError::Backend`]. etcd restarts the countdown of every
///   lease when it starts again, so a lease outlives an etcd outage by its
///   time to live; once it runs out, heartbeats get
///   [`RegistryError::UnknownLease`]: register again.
///
/// Clones share the client. When the last clone is dropped, every
/// [`Watch`] ends; registrations stay until their leases run out.
#[derive(Debug, Clone)]
pub struct EtcdRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// Without the trailing `/`.
    prefix: String,
    labels: InstanceLabels,
    config: EtcdRegistryConfig,
    /// The last instances read per service, for stale answers.
    known: Mutex<HashMap<ServiceName, Known>>,
    /// Dropped with the registry: ends the watch tasks.
    shutdown: watch::Sender<()>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("prefix", &self.prefix)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Known {
    discovered: Discovered,
    stale: bool,
}

/// How many times `set_health` retries when other writers keep changing
/// the instance between its read and its write.
const SET_HEALTH_ATTEMPTS: usize = 16;

impl EtcdRegistry {
    /// The settings it was built with.
    pub fn config(&self) -> &EtcdRegistryConfig {
        &self.inner.config
    }

    /// The etcd client it uses.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The key prefix every instance is under (the configured one without
    /// its trailing `/`).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The key prefix of `service`'s instances, ending in `/`.
    pub fn service_prefix(&self, service: &ServiceName) -> String {
        format!(
            "{}/{}/{}/{}/",
            self.inner.prefix,
            service.namespace(),
            service.group(),
            service.service()
        )
    }

    /// The key of instance `id` of `service`.
    pub fn instance_key(&self, service: &ServiceName, id: &str) -> String {
        format!("{}{id}", self.service_prefix(service))
    }

    fn timeout(&self) -> Duration {
        self.inner.config.request_timeout
    }

    fn name(&self) -> &str {
        &self.inner.config.name
    }

    async fn register_now(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> Result<LeaseId, RegistryError> {
        if ttl.is_zero() {
            return Err(RegistryError::InvalidTtl(ttl));
        }
        let seconds = i64::try_from(ttl.as_millis().div_ceil(1000)).unwrap_or(i64::MAX);
        let key = self.instance_key(instance.service(), instance.id());
        let value = serde_json::to_vec(&instance).map_err(backend)?;
        let mut lease = self.inner.client.lease_client();
        let granted = timed(self.timeout(), lease.grant(seconds, None))
            .await
            .map_err(backend)?;
        let id = granted.id();
        let mut kv = self.inner.client.kv_client();
        let put = timed(
            self.timeout(),
            kv.put(
                key,
                value,
                Some(PutOptions::new().with_lease(id).with_prev_key()),
            ),
        )
        .await;
        let put = match put {
            Ok(put) => put,
            Err(e) => {
                // best effort: the lease would run out anyway
                let _ = timed(self.timeout(), lease.revoke(id)).await;
                return Err(backend(e));
            }
        };
        let old = put.prev_key().map_or(0, |kv| kv.lease());
        if old != 0 && old != id {
            match timed(self.timeout(), lease.revoke(old)).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(registry = %self.name(), lease = old, error = %e, "older lease not revoked; it runs out by itself");
                }
            }
        }
        let revision = put.header().map_or(0, |h| h.revision());
        tracing::debug!(registry = %self.name(), service = %instance.service(), instance = %instance.id(), lease = id, ttl = seconds, revision, "registered");
        Ok(LeaseId(lease_u64(id)))
    }

    async fn heartbeat_now(&self, lease: LeaseId) -> Result<(), RegistryError> {
        let mut client = self.inner.client.lease_client();
        match timed(self.timeout(), client.keep_alive(lease_i64(lease)?)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Err(RegistryError::UnknownLease(lease)),
            Err(e) => Err(backend(e)),
        }
    }

    async fn deregister_now(&self, lease: LeaseId) -> Result<(), RegistryError> {
        let mut client = self.inner.client.lease_client();
        match timed(self.timeout(), client.revoke(lease_i64(lease)?)).await {
            Ok(_) => {
                tracing::debug!(registry = %self.name(), %lease, "deregistered");
                Ok(())
            }
            Err(e) if e.is_not_found() => Err(RegistryError::UnknownLease(lease)),
            Err(e) => Err(backend(e)),
        }
    }

    async fn set_health_now(
        &self,
        service: &ServiceName,
        id: &str,
        health: HealthStatus,
    ) -> Result<u64, RegistryError> {
        let key = self.instance_key(service, id);
        let unknown = || RegistryError::UnknownInstance {
            service: service.clone(),
            id: id.to_owned(),
        };
        let mut kv = self.inner.client.kv_client();
        for _ in 0..SET_HEALTH_ATTEMPTS {
            let got = timed(self.timeout(), kv.get(key.as_str(), None))
                .await
                .map_err(backend)?;
            let current = got.kvs().first().ok_or_else(unknown)?;
            let instance: Instance = serde_json::from_slice(current.value()).map_err(backend)?;
            let revision = current.mod_revision();
            if instance.health() == health {
                return Ok(rev_u64(revision));
            }
            let value = serde_json::to_vec(&instance.with_health(health)).map_err(backend)?;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    revision,
                )])
                .and_then([TxnOp::put(
                    key.as_str(),
                    value,
                    Some(PutOptions::new().with_lease(current.lease())),
                )]);
            let done = timed(self.timeout(), kv.txn(txn)).await.map_err(backend)?;
            if done.succeeded() {
                let revision = done.header().map_or(0, |h| h.revision());
                tracing::debug!(registry = %self.name(), %service, instance = %id, ?health, revision, "health set");
                return Ok(rev_u64(revision));
            }
            tracing::debug!(registry = %self.name(), %service, instance = %id, "instance changed under set_health: retrying");
        }
        Err(RegistryError::Backend(
            format!("instance {id:?} of {service} kept changing: gave up after {SET_HEALTH_ATTEMPTS} attempts").into(),
        ))
    }

    async fn discover_now(&self, service: &ServiceName) -> Result<Discovered, RegistryError> {
        let prefix = self.service_prefix(service);
        match list(&self.inner.client, prefix.as_bytes(), self.timeout()).await {
            Ok(snapshot) => {
                let mut instances: Vec<Instance> = snapshot
                    .keys
                    .values()
                    .filter_map(|(_, value)| self.decode(value))
                    .collect();
                instances.sort_by(|a, b| a.id().cmp(b.id()));
                let discovered = Discovered {
                    revision: rev_u64(snapshot.revision),
                    instances,
                    stale: false,
                };
                let mut known = self.inner.lock_known();
                let was_stale = known.get(service).is_some_and(|k| k.stale);
                if was_stale {
                    metrics::gauge!(STALE, self.inner.service_labels(service)).set(0.0);
                    tracing::info!(registry = %self.name(), %service, "etcd answers again: discovery fresh");
                }
                known.insert(
                    service.clone(),
                    Known {
                        discovered: discovered.clone(),
                        stale: false,
                    },
                );
                Ok(discovered)
            }
            Err(error) => {
                let mut known = self.inner.lock_known();
                let Some(last) = known.get_mut(service) else {
                    return Err(backend(error));
                };
                metrics::counter!(STALE_TOTAL, self.inner.service_labels(service)).increment(1);
                if !last.stale {
                    last.stale = true;
                    metrics::gauge!(STALE, self.inner.service_labels(service)).set(1.0);
                }
                tracing::warn!(registry = %self.name(), %service, %error, revision = last.discovered.revision, "etcd unreachable: serving the last known instances");
                Ok(Discovered {
                    stale: true,
                    ..last.discovered.clone()
                })
            }
        }
    }

    /// An instance from a stored value; an undecodable value is skipped
    /// (logged), never served.
    fn decode(&self, value: &[u8]) -> Option<Instance> {
        decode(self.name(), value)
    }

    async fn watch_now(&self, service: &ServiceName) -> Result<Watch, RegistryError> {
        let prefix = self.service_prefix(service);
        let snapshot = list(&self.inner.client, prefix.as_bytes(), self.timeout())
            .await
            .map_err(backend)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut sink = EventSink {
            tx,
            name: self.name().to_owned(),
        };
        for (_, revision, value) in snapshot.by_revision() {
            if let Some(instance) = self.decode(value) {
                sink.deliver(rev_u64(revision), EventKind::Insert, instance);
            }
        }
        let resume = Resume::from_snapshot(
            self.inner.client.clone(),
            prefix.into_bytes(),
            snapshot,
            Backoff::new(self.inner.config.backoff_min, self.inner.config.backoff_max),
            self.timeout(),
            self.name().to_owned(),
            self.inner.shutdown.subscribe(),
        );
        tokio::spawn(resume.run(sink));
        Ok(Watch::from_receiver(rx))
    }
}

impl Inner {
    fn lock_known(&self) -> MutexGuard<'_, HashMap<ServiceName, Known>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn service_labels(&self, name: &ServiceName) -> Vec<metrics::Label> {
        let mut labels = self.labels.to_vec();
        labels.push(metrics::Label::new(SERVICE_LABEL, name.to_string()));
        labels
    }
}

fn decode(registry: &str, value: &[u8]) -> Option<Instance> {
    match serde_json::from_slice(value) {
        Ok(instance) => Some(instance),
        Err(error) => {
            tracing::warn!(%registry, %error, "undecodable instance in etcd: skipped");
            None
        }
    }
}

/// Turns key events into registry events.
struct EventSink {
    tx: mpsc::UnboundedSender<Result<Event, RegistryError>>,
    name: String,
}

impl EventSink {
    fn deliver(&mut self, revision: u64, kind: EventKind, instance: Instance) -> bool {
        self.tx
            .send(Ok(Event {
                revision,
                kind,
                instance,
            }))
            .is_ok()
    }
}

impl Sink for EventSink {
    fn send(&mut self, event: KeyEvent) -> bool {
        let revision = rev_u64(event.revision);
        let prev = event.prev.as_deref().and_then(|v| decode(&self.name, v));
        match (event.value, prev) {
            (Some(value), prev) => match decode(&self.name, &value) {
                Some(instance) if prev.is_some() => {
                    self.deliver(revision, EventKind::Update, instance)
                }
                Some(instance) => self.deliver(revision, EventKind::Insert, instance),
                None => true,
            },
            (None, Some(prev)) => self.deliver(revision, EventKind::Remove, prev),
            (None, None) => true,
        }
    }

    fn closed(&self) -> impl Future<Output = ()> + Send + '_ {
        self.tx.closed()
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> RegistryError {
    RegistryError::Backend(Box::new(e))
}

fn rev_u64(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

fn lease_u64(id: i64) -> u64 {
    u64::try_from(id).unwrap_or(0)
}

/// etcd lease ids are positive `i64`s: a larger one was never granted.
fn lease_i64(lease: LeaseId) -> Result<i64, RegistryError> {
    i64::try_from(lease.0).map_err(|_| RegistryError::UnknownLease(lease))
}

impl Registry for EtcdRegistry {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<LeaseId, RegistryError>> {
        Box::pin(self.register_now(instance, ttl))
    }

    fn heartbeat(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(self.heartbeat_now(lease))
    }

    fn deregister(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(self.deregister_now(lease))
    }

    fn discover<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Discovered, RegistryError>> {
        Box::pin(self.discover_now(service))
    }

    fn set_health<'a>(
        &'a self,
        service: &'a ServiceName,
        id: &'a str,
        health: HealthStatus,
    ) -> BoxFuture<'a, Result<u64, RegistryError>> {
        Box::pin(self.set_health_now(service, id, health))
    }

    fn watch<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, Result<Watch, RegistryError>> {
        Box::pin(self.watch_now(service))
    }
}

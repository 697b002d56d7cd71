//! [`Sidecar`]: keeps a local application registered while it is healthy.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use super::probe::bounded;
use super::state::{CheckMetrics, Thresholds};
use super::{HealthCheck, HealthError, Probe, probe_for};
use crate::registry::{BoxFuture, HealthStatus, Instance, LeaseId, Registry, RegistryError};

/// What a [`Sidecar`] does while its application fails its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Keep the registration (and its heartbeats) and set its status to
    /// [`Unhealthy`](HealthStatus::Unhealthy): still discovered, not routed
    /// to. The default.
    #[default]
    MarkUnhealthy,
    /// Deregister it, and register it again (a new lease) once it passes.
    Deregister,
}

/// The settings of a [`Sidecar`].
///
/// Deserializes from TOML with every field optional, durations as `"30s"`
/// and unknown keys refused; the health check is the `[check]` table
/// ([`HealthCheck`]):
///
/// ```
/// use std::time::Duration;
/// use rampart_discovery::health::{HealthCheck, OnFailure, SidecarConfig};
///
/// let config: SidecarConfig = toml::from_str(r#"
///     ttl = "15s"
///     on_failure = "deregister"
///     [check]
///     interval = "2s"
///     [check.kind.http]
///     path = "/ready"
/// "#).unwrap();
/// assert_eq!(config.heartbeat_interval(), Duration::from_secs(5));
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SidecarConfig {
    name: String,
    #[serde(with = "rampart_core::duration")]
    ttl: Duration,
    heartbeat_fraction: f64,
    on_failure: OnFailure,
    #[serde(with = "rampart_core::duration")]
    retry_initial: Duration,
    #[serde(with = "rampart_core::duration")]
    retry_max: Duration,
    check: HealthCheck,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            ttl: Duration::from_secs(30),
            heartbeat_fraction: 1.0 / 3.0,
            on_failure: OnFailure::default(),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            check: HealthCheck::default(),
        }
    }
}

impl SidecarConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sidecar's name, put on its metrics as the `name` label and on
    /// its tracing events. Defaults to `""` (no label).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The lease's time to live: if the sidecar dies, the registry drops
    /// the instance this long after its last heartbeat. Must be longer than
    /// zero. Defaults to 30 s.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The heartbeat interval as a fraction of the ttl. Must be above 0
    /// and below 1 (a heartbeat per ttl would race the expiry). Defaults
    /// to 1/3: two heartbeats may be lost before the lease runs out.
    pub fn heartbeat_fraction(mut self, fraction: f64) -> Self {
        self.heartbeat_fraction = fraction;
        self
    }

    /// What to do while the application fails its check. Defaults to
    /// [`OnFailure::MarkUnhealthy`].
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// The first wait before retrying a registry call that failed; each
    /// further failure doubles it, up to [`retry_max`](Self::retry_max).
    /// Must be longer than zero. Defaults to 1 s.
    pub fn retry_initial(mut self, wait: Duration) -> Self {
        self.retry_initial = wait;
        self
    }

    /// The longest wait between retries. Must not be shorter than
    /// `retry_initial`. Defaults to 30 s.
    pub fn retry_max(mut self, wait: Duration) -> Self {
        self.retry_max = wait;
        self
    }

    /// The application's health check. Defaults to [`HealthCheck`]'s
    /// defaults (a TCP connect every 10 s).
    pub fn check(mut self, check: HealthCheck) -> Self {
        self.check = check;
        self
    }

    /// `ttl × heartbeat_fraction`.
    pub fn heartbeat_interval(&self) -> Duration {
        self.ttl.mul_f64(self.heartbeat_fraction)
    }

    /// Checks the settings, naming the first field at fault: a zero `ttl`,
    /// a `heartbeat_fraction` not within `(0, 1)`, a zero `retry_initial`,
    /// a `retry_max` below it, or a fault of the check
    /// ([`HealthCheck::validate`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero_duration("ttl", self.ttl)?;
        if !(self.heartbeat_fraction > 0.0 && self.heartbeat_fraction < 1.0)
            || self.heartbeat_interval().is_zero()
        {
            return Err(ConfigError::new(
                "heartbeat_fraction",
                format!(
                    "must be above 0.0 and below 1.0 (of a ttl of {:?}), got {}",
                    self.ttl, self.heartbeat_fraction
                ),
            ));
        }
        validate::non_zero_duration("retry_initial", self.retry_initial)?;
        if self.retry_max < self.retry_initial {
            return Err(ConfigError::new(
                "retry_max",
                format!(
                    "must not be shorter than retry_initial ({:?}), got {:?}",
                    self.retry_initial, self.retry_max
                ),
            ));
        }
        self.check.validate()
    }
}

/// Registers a local application's [`Instance`] in a registry and keeps it
/// there while the application is healthy, the way a service mesh sidecar
/// or a Consul agent does.
///
/// Once [`spawn`](Self::spawn)ed, one task:
///
/// - registers the instance with the configured ttl, as
///   [`Unknown`](HealthStatus::Unknown) until the check's first threshold
///   decides it;
/// - probes the application on the check's interval (with jitter), and
///   after `unhealthy_threshold` failures in a row sets it
///   [`Unhealthy`](HealthStatus::Unhealthy) (or deregisters it, with
///   [`OnFailure::Deregister`]), and after `healthy_threshold` passes sets
///   it [`Healthy`](HealthStatus::Healthy) again (or registers it anew);
/// - heartbeats the lease every `ttl × heartbeat_fraction` while it is
///   registered;
/// - when a heartbeat finds the lease lost ([`RegistryError::UnknownLease`]:
///   it expired, or someone deregistered it), registers again at once with
///   a new lease and the current status;
/// - when a registry call fails otherwise (an unreachable backend), retries
///   it after `retry_initial`, doubling up to `retry_max`, and goes back to
///   the heartbeat interval after the first success;
/// - on shutdown ([`SidecarHandle::shutdown`], or the signal given to
///   [`shutdown_on`](Self::shutdown_on)) deregisters the instance and
///   stops.
///
/// The [`SidecarHandle`] reports the lease, the status, the counts and the
/// last error. Metrics are the health checker's (labels `name`,
/// `service`): [`CHECKS_TOTAL`](super::CHECKS_TOTAL) and
/// [`TRANSITIONS_TOTAL`](super::TRANSITIONS_TOTAL).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use rampart_discovery::health::{HealthCheck, Sidecar, SidecarConfig};
/// use rampart_discovery::registry::{Instance, MemoryRegistry, Registry};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // the local application
/// let app = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let port = app.local_addr()?.port();
///
/// let registry = Arc::new(MemoryRegistry::new());
/// let instance = Instance::new("orders-1", "shop/orders", "127.0.0.1", port)?;
/// let config = SidecarConfig::new()
///     .ttl(Duration::from_secs(30))
///     .check(HealthCheck::new().interval(Duration::from_secs(5)));
/// let sidecar = Sidecar::new(registry.clone(), instance, config).spawn()?;
/// # for _ in 0..100 {
/// #     if sidecar.state().lease.is_some() { break }
/// #     tokio::time::sleep(Duration::from_millis(10)).await;
/// # }
/// let orders = "shop/orders".parse()?;
/// assert_eq!(registry.discover(&orders).await?.instances.len(), 1);
///
/// sidecar.shutdown().await?; // deregisters
/// assert!(registry.discover(&orders).await?.instances.is_empty());
/// # Ok(()) }
/// ```
pub struct Sidecar {
    registry: Arc<dyn Registry>,
    instance: Instance,
    config: SidecarConfig,
    probe: Option<Arc<dyn Probe>>,
    shutdown: Option<BoxFuture<'static, ()>>,
}

impl fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sidecar")
            .field("instance", &self.instance)
            .field("config", &self.config)
            .field("probe", &self.probe)
            .finish_non_exhaustive()
    }
}

impl Sidecar {
    /// A sidecar that will register `instance` in `registry`.
    pub fn new(registry: Arc<dyn Registry>, instance: Instance, config: SidecarConfig) -> Self {
        Self {
            registry,
            instance,
            config,
            probe: None,
            shutdown: None,
        }
    }

    /// Probes the application with `probe` instead of the check's kind
    /// (whose timeout still bounds each probe).
    pub fn probe(mut self, probe: Arc<dyn Probe>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Shuts down (deregisters and stops) when `signal` completes, for
    /// example `tokio::signal::ctrl_c()` mapped to `()`. Without it, only
    /// [`SidecarHandle::shutdown`] stops the sidecar.
    pub fn shutdown_on(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// Validates the settings and starts the sidecar's task. Must be
    /// called within a tokio runtime. An invalid configuration is
    /// [`HealthError::Config`] naming the field; registry failures happen
    /// later, in the task, and are retried.
    pub fn spawn(self) -> Result<SidecarHandle, HealthError> {
        self.config.validate()?;
        let probe = self
            .probe
            .unwrap_or_else(|| probe_for(&self.config.check.kind));
        let shared = Arc::new(Shared {
            state: Mutex::new(SidecarState::default()),
            stop: Notify::new(),
        });
        let task = Task {
            metrics: CheckMetrics::new(&self.config.name, self.instance.service()),
            thresholds: Thresholds::new(
                self.config.check.healthy_threshold,
                self.config.check.unhealthy_threshold,
            ),
            rng: self.config.check.rng(),
            registry: self.registry,
            instance: self.instance,
            config: self.config,
            probe,
            shared: shared.clone(),
            lease: None,
            written: HealthStatus::Unknown,
        };
        let task = tokio::spawn(task.run(self.shutdown));
        Ok(SidecarHandle { shared, task })
    }
}

/// What a [`Sidecar`] is doing: a snapshot from [`SidecarHandle::state`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SidecarState {
    /// The lease the instance is registered under, or `None` while it is
    /// not registered (not yet, deregistered, or lost and not yet
    /// re-registered).
    pub lease: Option<LeaseId>,
    /// The check's verdict on the application.
    pub health: HealthStatus,
    /// Successful registrations (the first one and every re-registration).
    pub registrations: u64,
    /// Successful heartbeats.
    pub heartbeats: u64,
    /// Leases found lost by a heartbeat.
    pub leases_lost: u64,
    /// The last registry error, if any call failed.
    pub last_error: Option<String>,
    /// The sidecar has shut down.
    pub stopped: bool,
}

/// The handle of a running [`Sidecar`]: its state, and its shutdown.
/// Dropping it leaves the sidecar running (until the signal given to
/// [`Sidecar::shutdown_on`], if any).
#[derive(Debug)]
pub struct SidecarHandle {
    shared: Arc<Shared>,
    task: JoinHandle<Result<(), RegistryError>>,
}

impl SidecarHandle {
    /// The sidecar's state now.
    pub fn state(&self) -> SidecarState {
        self.shared.state().clone()
    }

    /// Stops the sidecar and deregisters the instance. The error is the
    /// deregistration's, if it failed (the lease then expires within its
    /// ttl); a lease already gone is not an error.
    pub async fn shutdown(self) -> Result<(), RegistryError> {
        self.shared.stop.notify_one();
        self.task
            .await
            .unwrap_or_else(|e| Err(RegistryError::Backend(e.into())))
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<SidecarState>,
    stop: Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, SidecarState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sidecar's task and what it owns.
struct Task {
    registry: Arc<dyn Registry>,
    instance: Instance,
    config: SidecarConfig,
    probe: Arc<dyn Probe>,
    shared: Arc<Shared>,
    metrics: CheckMetrics,
    thresholds: Thresholds,
    rng: rampart_core::random::SharedRng,
    /// The lease held, if registered.
    lease: Option<LeaseId>,
    /// The status the registry holds under `lease`.
    written: HealthStatus,
}

impl Task {
    async fn run(mut self, shutdown: Option<BoxFuture<'static, ()>>) -> Result<(), RegistryError> {
        let mut shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
        let check = self.config.check.clone();
        let mut next_probe = Instant::now() + check.first_delay(&self.rng);
        // the registry is called now (the first registration), then on the
        // heartbeat interval, sooner after a transition, or on a backoff
        let mut next_sync = Instant::now();
        let mut retry: Option<Duration> = None;
        loop {
            tokio::select! {
                biased;
                () = self.shared.stop.notified() => break,
                () = &mut shutdown => break,
                () = sleep_until(next_probe) => {
                    let result = bounded(&*self.probe, &self.instance, check.probe_timeout()).await;
                    if self.record(result.err()) && retry.is_none() {
                        next_sync = Instant::now();
                    }
                    next_probe = Instant::now() + check.next_delay(&self.rng);
                }
                () = sleep_until(next_sync) => match self.sync().await {
                    Ok(()) => {
                        retry = None;
                        next_sync = Instant::now() + self.config.heartbeat_interval();
                    }
                    Err(error) => {
                        let wait = retry.map_or(self.config.retry_initial, |w| {
                            (w * 2).min(self.config.retry_max)
                        });
                        retry = Some(wait);
                        tracing::warn!(sidecar = %self.config.name, service = %self.instance.service(), instance = %self.instance.id(), %error, retry_in = ?wait, "registry call failed");
                        self.shared.state().last_error = Some(error.to_string());
                        next_sync = Instant::now() + wait;
                    }
                },
            }
        }
        let result = self.deregister().await;
        let mut state = self.shared.state();
        if let Err(error) = &result {
            tracing::warn!(sidecar = %self.config.name, service = %self.instance.service(), instance = %self.instance.id(), %error, "could not deregister at shutdown; the lease expires within its ttl");
            state.last_error = Some(error.to_string());
        }
        state.stopped = true;
        result
    }

    /// Records a probe result; whether the verdict changed.
    fn record(&mut self, error: Option<super::ProbeError>) -> bool {
        self.metrics.check(error.is_none());
        let from = self.thresholds.status();
        let Some(to) = self.thresholds.record(error.is_none()) else {
            return false;
        };
        self.metrics.transition(to);
        let (name, service, id) = (
            &self.config.name,
            self.instance.service(),
            self.instance.id(),
        );
        match error {
            Some(error) => {
                tracing::warn!(sidecar = %name, %service, instance = %id, ?from, ?to, %error, "application health changed");
            }
            None => {
                tracing::info!(sidecar = %name, %service, instance = %id, ?from, ?to, "application health changed");
            }
        }
        self.shared.state().health = to;
        true
    }

    /// One turn with the registry: brings the registration in line with
    /// the verdict, heartbeating the lease if it is kept, and registering
    /// again if it was lost.
    async fn sync(&mut self) -> Result<(), RegistryError> {
        let verdict = self.thresholds.status();
        let wanted = !(verdict == HealthStatus::Unhealthy
            && self.config.on_failure == OnFailure::Deregister);
        if !wanted {
            return self.deregister().await;
        }
        if let Some(lease) = self.lease {
            match self.registry.heartbeat(lease).await {
                Ok(()) => self.shared.state().heartbeats += 1,
                Err(RegistryError::UnknownLease(_)) => self.lost(lease),
                Err(e) => return Err(e),
            }
        }
        if let Some(lease) = self.lease
            && self.written != verdict
        {
            let service = self.instance.service();
            match self
                .registry
                .set_health(service, self.instance.id(), verdict)
                .await
            {
                Ok(_) => self.written = verdict,
                Err(RegistryError::UnknownInstance { .. }) => self.lost(lease),
                Err(e) => return Err(e),
            }
        }
        if self.lease.is_none() {
            let instance = self.instance.clone().with_health(verdict);
            let lease = self.registry.register(instance, self.config.ttl).await?;
            tracing::info!(sidecar = %self.config.name, service = %self.instance.service(), instance = %self.instance.id(), %lease, health = ?verdict, "registered");
            self.lease = Some(lease);
            self.written = verdict;
            let mut state = self.shared.state();
            state.lease = Some(lease);
            state.registrations += 1;
        }
        Ok(())
    }

    /// The registry no longer knows `lease`.
    fn lost(&mut self, lease: LeaseId) {
        tracing::warn!(sidecar = %self.config.name, service = %self.instance.service(), instance = %self.instance.id(), %lease, "lease lost; registering again");
        self.lease = None;
        let mut state = self.shared.state();
        state.lease = None;
        state.leases_lost += 1;
    }

    /// Deregisters the instance if it is registered (a lease already gone
    /// counts as done).
    async fn deregister(&mut self) -> Result<(), RegistryError> {
        let Some(lease) = self.lease else {
            return Ok(());
        };
        match self.registry.deregister(lease).await {
            Ok(()) | Err(RegistryError::UnknownLease(_)) => {
                tracing::info!(sidecar = %self.config.name, service = %self.instance.service(), instance = %self.instance.id(), %lease, "deregistered");
                self.lease = None;
                self.shared.state().lease = None;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

//! [`HealthChecker`]: active checks of every instance of a service, their
//! verdicts written to the registry.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rampart_core::random::SharedRng;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, sleep_until};

use super::probe::bounded;
use super::state::{CheckMetrics, Thresholds};
use super::{HealthCheck, HealthError, Probe, probe_for};
use crate::registry::{EventKind, HealthStatus, Instance, Registry, RegistryError, ServiceName};

/// Runs a [`HealthCheck`] against every instance of one service and
/// writes the verdicts to the registry with
/// [`set_health`](Registry::set_health).
///
/// It watches the service: each instance gets its own task (started when
/// the instance appears, retargeted when an update changes its address or
/// port, stopped when it leaves) that probes it on its own jittered
/// interval timer; nothing else polls. A new or retargeted instance's
/// verdict is [`Unknown`](HealthStatus::Unknown) until
/// [`healthy_threshold`](HealthCheck::healthy_threshold) passes or
/// [`unhealthy_threshold`](HealthCheck::unhealthy_threshold) failures in a
/// row decide it. The checker calls `set_health` only when its verdict
/// differs from the status the registry holds: once per transition, and
/// again if a re-registration overwrote the status. `Unknown` is never
/// written (an instance is registered with the status its owner gave it,
/// [`Healthy`](HealthStatus::Healthy) by default; register it
/// [`Unhealthy`](HealthStatus::Unhealthy) to keep it out of rotation until
/// its first checks pass).
///
/// # Failures
///
/// A probe that fails or takes longer than the check's timeout counts as
/// a failure. A `set_health` that fails (the registry is unreachable) is
/// logged and tried again after the instance's next probe; the verdict is
/// kept. A watch error is logged and the watch read on (a backend
/// resynchronises it); when the watch ends (the registry is gone) every
/// task stops.
///
/// Metrics (labels `name`, `service`): [`CHECKS_TOTAL`](super::CHECKS_TOTAL)
/// by `outcome` and [`TRANSITIONS_TOTAL`](super::TRANSITIONS_TOTAL) by
/// `state`. Each transition is an `info` event (`warn` to unhealthy).
pub struct HealthChecker {
    registry: Arc<dyn Registry>,
    service: ServiceName,
    check: HealthCheck,
    probe: Option<Arc<dyn Probe>>,
    name: String,
}

impl fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthChecker")
            .field("service", &self.service)
            .field("check", &self.check)
            .field("probe", &self.probe)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl HealthChecker {
    /// A checker of `service`'s instances in `registry`, running `check`.
    pub fn new(registry: Arc<dyn Registry>, service: ServiceName, check: HealthCheck) -> Self {
        Self {
            registry,
            service,
            check,
            probe: None,
            name: String::new(),
        }
    }

    /// The checker's name, put on its metrics as the `name` label and on
    /// its tracing events. Defaults to `""` (no label).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Probes with `probe` instead of the check's kind (whose timeout
    /// still bounds each probe). Defaults to the kind's probe
    /// ([`probe_for`]).
    pub fn probe(mut self, probe: Arc<dyn Probe>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Validates the check, subscribes to the service and starts checking.
    /// Must be called within a tokio runtime.
    ///
    /// Fails with [`HealthError::Config`] for an invalid check and
    /// [`HealthError::Registry`] if the watch could not be opened.
    pub async fn spawn(self) -> Result<HealthCheckerHandle, HealthError> {
        self.check.validate()?;
        let watch = self.registry.watch(&self.service).await?;
        let probe = self.probe.unwrap_or_else(|| probe_for(&self.check.kind));
        let ctx = Arc::new(Ctx {
            metrics: CheckMetrics::new(&self.name, &self.service),
            rng: self.check.rng(),
            registry: self.registry,
            service: self.service,
            check: self.check,
            probe,
            name: self.name,
            statuses: Mutex::new(BTreeMap::new()),
        });
        let supervisor = tokio::spawn(supervise(ctx.clone(), watch)).abort_handle();
        Ok(HealthCheckerHandle { ctx, supervisor })
    }
}

/// One instance as its checker sees it: a snapshot from
/// [`HealthCheckerHandle::instances`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstanceHealth {
    /// The instance id.
    pub id: String,
    /// The `address:port` probed.
    pub authority: String,
    /// The checker's verdict ([`Unknown`](HealthStatus::Unknown) until a
    /// threshold is reached).
    pub status: HealthStatus,
    /// Passed probes in a row, now.
    pub consecutive_successes: u32,
    /// Failed probes in a row, now.
    pub consecutive_failures: u32,
    /// Probes run.
    pub checks: u64,
    /// Probes failed.
    pub failures: u64,
    /// Verdict changes.
    pub transitions: u64,
    /// The last failure's message, if any probe failed.
    pub last_error: Option<String>,
}

impl InstanceHealth {
    fn new(instance: &Instance) -> Self {
        Self {
            id: instance.id().to_owned(),
            authority: instance.authority(),
            status: HealthStatus::Unknown,
            consecutive_successes: 0,
            consecutive_failures: 0,
            checks: 0,
            failures: 0,
            transitions: 0,
            last_error: None,
        }
    }
}

/// The handle of a running [`HealthChecker`]: read each instance's
/// verdict and counters, or stop it. Clones share the checker; dropping
/// every handle does not stop it (call [`stop`](Self::stop)).
#[derive(Debug, Clone)]
pub struct HealthCheckerHandle {
    ctx: Arc<Ctx>,
    supervisor: AbortHandle,
}

impl HealthCheckerHandle {
    /// Every checked instance, by id.
    pub fn instances(&self) -> Vec<InstanceHealth> {
        self.ctx.statuses().values().cloned().collect()
    }

    /// Instance `id`, if it is being checked.
    pub fn instance(&self, id: &str) -> Option<InstanceHealth> {
        self.ctx.statuses().get(id).cloned()
    }

    /// The verdict on instance `id`, if it is being checked.
    pub fn status(&self, id: &str) -> Option<HealthStatus> {
        self.ctx.statuses().get(id).map(|h| h.status)
    }

    /// Stops every check. The registry keeps the last statuses written.
    pub fn stop(&self) {
        self.supervisor.abort();
        self.ctx.statuses().clear();
    }

    /// Whether the checker has stopped ([`stop`](Self::stop), or the
    /// registry's watch ended).
    pub fn is_stopped(&self) -> bool {
        self.supervisor.is_finished()
    }
}

/// What every task of one checker shares.
struct Ctx {
    registry: Arc<dyn Registry>,
    service: ServiceName,
    check: HealthCheck,
    probe: Arc<dyn Probe>,
    name: String,
    rng: SharedRng,
    metrics: CheckMetrics,
    statuses: Mutex<BTreeMap<String, InstanceHealth>>,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("service", &self.service)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    fn statuses(&self) -> MutexGuard<'_, BTreeMap<String, InstanceHealth>> {
        self.statuses.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut InstanceHealth)) {
        if let Some(h) = self.statuses().get_mut(id) {
            f(h);
        }
    }

    /// Writes `verdict` to the registry if it is decided and differs from
    /// what the registry holds (`target`'s status, as last seen).
    async fn reconcile(&self, target: &mut Instance, verdict: HealthStatus) {
        if verdict == HealthStatus::Unknown || verdict == target.health() {
            return;
        }
        match self
            .registry
            .set_health(&self.service, target.id(), verdict)
            .await
        {
            Ok(_) => *target = target.clone().with_health(verdict),
            // removed meanwhile: its Remove event stops this task
            Err(RegistryError::UnknownInstance { .. }) => {}
            Err(error) => {
                tracing::warn!(health_check = %self.name, service = %self.service, instance = %target.id(), ?verdict, %error, "could not set health; retrying after the next probe");
            }
        }
    }
}

/// Follows the service's watch, keeping one task per instance.
async fn supervise(ctx: Arc<Ctx>, mut watch: crate::registry::Watch) {
    let mut tasks = JoinSet::new();
    let mut running: HashMap<String, (watch::Sender<Instance>, AbortHandle)> = HashMap::new();
    loop {
        let event = tokio::select! {
            event = watch.next() => event,
            // reap the tasks aborted on removal
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let event = match event {
            None => break,
            Some(Ok(event)) => event,
            Some(Err(error)) => {
                tracing::warn!(health_check = %ctx.name, service = %ctx.service, %error, "registry watch failed");
                continue;
            }
        };
        let id = event.instance.id().to_owned();
        match event.kind {
            EventKind::Insert | EventKind::Update => {
                if let Some((tx, _)) = running.get(&id) {
                    tx.send_replace(event.instance);
                    continue;
                }
                ctx.statuses()
                    .insert(id.clone(), InstanceHealth::new(&event.instance));
                let (tx, rx) = watch::channel(event.instance);
                let task = tasks.spawn(check_instance(ctx.clone(), rx));
                running.insert(id, (tx, task));
            }
            EventKind::Remove => {
                if let Some((_, task)) = running.remove(&id) {
                    task.abort();
                }
                ctx.statuses().remove(&id);
            }
        }
    }
    tracing::debug!(health_check = %ctx.name, service = %ctx.service, "registry watch ended; checks stopped");
    ctx.statuses().clear();
}

/// Probes one instance on its interval timer until aborted or its channel
/// closes.
async fn check_instance(ctx: Arc<Ctx>, mut rx: watch::Receiver<Instance>) {
    let (healthy, unhealthy) = (ctx.check.healthy_threshold, ctx.check.unhealthy_threshold);
    let mut thresholds = Thresholds::new(healthy, unhealthy);
    let mut target = rx.borrow_and_update().clone();
    let mut next = Instant::now() + ctx.check.first_delay(&ctx.rng);
    loop {
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let updated = rx.borrow_and_update().clone();
                if updated.authority() != target.authority() {
                    // a new endpoint: judge it afresh
                    thresholds.reset();
                    let authority = updated.authority();
                    tracing::info!(health_check = %ctx.name, service = %ctx.service, instance = %updated.id(), %authority, "instance moved; checking the new address");
                    ctx.update(updated.id(), |h| {
                        h.authority = authority;
                        h.status = HealthStatus::Unknown;
                        h.consecutive_successes = 0;
                        h.consecutive_failures = 0;
                    });
                    next = Instant::now() + ctx.check.first_delay(&ctx.rng);
                }
                target = updated;
                // a re-registration may have overwritten the verdict
                ctx.reconcile(&mut target, thresholds.status()).await;
            }
            () = sleep_until(next) => {
                let result = bounded(&*ctx.probe, &target, ctx.check.probe_timeout()).await;
                if rx.borrow().authority() != target.authority() {
                    // moved while probing: the result is for the old address
                    continue;
                }
                record(&ctx, &target, &mut thresholds, result.as_ref().err());
                ctx.reconcile(&mut target, thresholds.status()).await;
                next = Instant::now() + ctx.check.next_delay(&ctx.rng);
            }
        }
    }
}

/// Counts one probe result and logs a transition it causes.
fn record(
    ctx: &Ctx,
    target: &Instance,
    thresholds: &mut Thresholds,
    error: Option<&super::ProbeError>,
) {
    ctx.metrics.check(error.is_none());
    let from = thresholds.status();
    let transition = thresholds.record(error.is_none());
    if let Some(to) = transition {
        ctx.metrics.transition(to);
        match error {
            Some(error) => {
                tracing::warn!(health_check = %ctx.name, service = %ctx.service, instance = %target.id(), ?from, ?to, %error, "instance health changed");
            }
            None => {
                tracing::info!(health_check = %ctx.name, service = %ctx.service, instance = %target.id(), ?from, ?to, "instance health changed");
            }
        }
    }
    ctx.update(target.id(), |h| {
        h.status = thresholds.status();
        h.consecutive_successes = thresholds.successes();
        h.consecutive_failures = thresholds.failures();
        h.checks += 1;
        if let Some(e) = error {
            h.failures += 1;
            h.last_error = Some(e.to_string());
        }
        if transition.is_some() {
            h.transitions += 1;
        }
    });
}

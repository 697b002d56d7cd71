//! [`Balance`]: a `Service` that spreads requests over a changing set of
//! endpoints.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::{Future, poll_fn};
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use metrics::{Counter, Gauge};
use pin_project_lite::pin_project;
use rampart_core::BoxError;
use rampart_core::classify::{Classify, Outcome, ResultClassifier};
use rampart_core::clock::nanos;
use rampart_core::metric_name;
use rampart_core::metrics::{InstanceLabels, labels};
use rampart_core::random::{SharedRng, fresh_seed, splitmix64};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};
use tower::discover::{Change, Discover};
use tower_service::Service;

use crate::config::BalanceConfig;
use crate::error::{DiscoverError, NoEndpoints, NoReadyEndpoint};
use crate::handle::{BalanceHandle, EndpointEntry, EndpointStats};
use crate::health::{OutlierDetector, PanicThreshold, SlowStart};
use crate::strategy::{Endpoint, Loads, Pick, Strategy};

/// A request's hash key, for the hash strategies.
type HashFn<Req> = Arc<dyn Fn(&Req) -> Option<u64> + Send + Sync>;

/// A balancer over the endpoints a [`Discover`] stream yields.
///
/// See the [crate docs](crate) for an example and the behaviour.
pub struct Balance<D, Req, C = ResultClassifier>
where
    D: Discover,
{
    discover: D,
    discover_ended: bool,
    strategy: Box<dyn Strategy>,
    classify: Arc<C>,
    hash: Option<HashFn<Req>>,
    weight_of: fn(&D::Service) -> u32,
    config: BalanceConfig,

    slots: Vec<Option<Slot<D::Key, D::Service>>>,
    views: Vec<Option<Endpoint>>,
    by_key: HashMap<D::Key, usize>,
    free: Vec<usize>,
    /// Slots called since their last `poll_ready`.
    unpolled: Vec<usize>,
    /// The slots being polled now: swapped with `unpolled` so that neither
    /// list allocates per call.
    polling: Vec<usize>,
    /// Slots that may be picked; valid when `routable_dirty` is false.
    routable: Vec<usize>,
    routable_dirty: bool,
    table_changed: bool,
    /// The earliest end of a `Retry-After` back-off, in nanoseconds.
    next_backoff_end: Option<u64>,
    /// Reports taken from `Shared::reports`, kept to reuse its capacity.
    report_buf: Vec<Report>,
    outlier: Option<OutlierDetector>,
    slow_start: SlowStart,
    panic: PanicThreshold,
    /// The last routable set was every ready endpoint (too few healthy).
    panic_mode: bool,
    /// When the last slow-start ramp in progress ends.
    ramp_ends: Option<Instant>,

    driven_tx: mpsc::UnboundedSender<Driven<D::Service>>,
    driven_rx: mpsc::UnboundedReceiver<Driven<D::Service>>,
    shared: Arc<Shared>,
    rng: SharedRng,
    next_generation: u64,

    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

/// State the balancer shares with its response futures and handles.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Where the nanosecond times (back-offs, latencies) count from.
    pub(crate) origin: Instant,
    pub(crate) decay_ns: f64,
    penalty_ns: f64,
    /// Answers not yet applied to the endpoints' health: only those that
    /// matter (every answer with outlier detection on; otherwise only
    /// those with a `Retry-After`).
    reports: Mutex<Vec<Report>>,
    /// `reports` may hold some: the balancer takes the lock only then.
    has_reports: AtomicBool,
    /// Outlier detection is on: every answer is reported.
    report_all: bool,
    /// What a [`BalanceHandle`] reports, by endpoint id; updated on every
    /// change of the set, a weight or a health state (not per call).
    pub(crate) table: Mutex<BTreeMap<Arc<str>, EndpointEntry>>,
    labels: InstanceLabels,
    endpoints_gauge: Gauge,
    panic_gauge: Gauge,
    unavailable: [Counter; 2],
}

/// One answer, as the balancer learns of it.
#[derive(Debug, Clone, Copy)]
struct Report {
    slot: usize,
    generation: u64,
    outcome: Outcome,
    retry_after: Option<Duration>,
}

struct Slot<K, S> {
    key: K,
    generation: u64,
    weight: u32,
    service: ServiceState<S>,
    stats: Arc<EndpointStats>,
    /// Out of rotation until then (nanoseconds of the origin), after an
    /// answer with `Retry-After`.
    backoff_until: u64,
    /// Added or re-admitted after an ejection then: slow start counts from
    /// here.
    in_rotation_since: Instant,
}

enum ServiceState<S> {
    /// Returned `Ready` from `poll_ready` and not called since.
    Ready(S),
    /// Called since its last `poll_ready`.
    Unpolled(S),
    /// Not ready: a task drives it until it is.
    Driving(AbortHandle),
    /// Moved out for a moment (never seen outside one method).
    Taken,
}

/// A service a driver task brought to readiness (or failure).
struct Driven<S> {
    slot: usize,
    generation: u64,
    result: Result<S, BoxError>,
}

impl<K, S> Drop for Slot<K, S> {
    fn drop(&mut self) {
        if let ServiceState::Driving(task) = &self.service {
            task.abort();
        }
    }
}

impl Shared {
    /// Nanoseconds from the origin to `t`.
    pub(crate) fn nanos_at(&self, t: Instant) -> u64 {
        nanos(t.saturating_duration_since(self.origin))
    }

    /// Nanoseconds from the origin to now.
    pub(crate) fn now_ns(&self) -> u64 {
        self.nanos_at(Instant::now())
    }

    pub(crate) fn lock_table(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<Arc<str>, EndpointEntry>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// === impl Balance ===

impl<D, Req> Balance<D, Req, ResultClassifier>
where
    D: Discover,
    D::Key: Hash + Eq + Clone + fmt::Display,
{
    /// A balancer over `discover`'s endpoints, picking with `strategy`,
    /// with the default settings and classifier (`Err` is a failure).
    pub fn new(discover: D, strategy: impl Strategy + 'static) -> Self {
        Self::with_config(discover, strategy, BalanceConfig::default())
            .expect("the default settings are valid")
    }

    /// A balancer with `config`, after validating it.
    pub fn with_config(
        discover: D,
        strategy: impl Strategy + 'static,
        config: BalanceConfig,
    ) -> Result<Self, rampart_core::ConfigError> {
        config.validate()?;
        let slow_start = config.slow_start.build()?;
        let panic = config.panic_threshold;
        let (driven_tx, driven_rx) = mpsc::unbounded_channel();
        let seed = config.seed.unwrap_or_else(fresh_seed);
        let labels = InstanceLabels::new(config.name.clone());
        let outlier = match &config.outlier {
            Some(outlier) => Some(OutlierDetector::new(
                outlier.clone(),
                &config.name,
                splitmix64(seed),
                Instant::now(),
            )?),
            None => None,
        };
        let unavailable = |reason: &'static str| {
            metrics::counter!(
                metric_name!("balance", "unavailable_total"),
                labels.with(labels::REASON, reason)
            )
        };
        Ok(Self {
            discover,
            discover_ended: false,
            strategy: Box::new(strategy),
            classify: Arc::new(ResultClassifier),
            hash: None,
            weight_of: |_| 1,
            shared: Arc::new(Shared {
                origin: Instant::now(),
                decay_ns: nanos(config.decay) as f64,
                penalty_ns: nanos(config.failure_penalty) as f64,
                reports: Mutex::new(Vec::new()),
                has_reports: AtomicBool::new(false),
                report_all: outlier.is_some(),
                table: Mutex::new(BTreeMap::new()),
                endpoints_gauge: metrics::gauge!(
                    metric_name!("balance", "endpoints"),
                    labels.to_vec()
                ),
                panic_gauge: metrics::gauge!(metric_name!("balance", "panic"), labels.to_vec()),
                unavailable: [unavailable("no_endpoints"), unavailable("none_ready")],
                labels,
            }),
            config,
            slots: Vec::new(),
            views: Vec::new(),
            by_key: HashMap::new(),
            free: Vec::new(),
            unpolled: Vec::new(),
            polling: Vec::new(),
            routable: Vec::new(),
            routable_dirty: true,
            table_changed: true,
            next_backoff_end: None,
            report_buf: Vec::new(),
            outlier,
            slow_start,
            panic,
            panic_mode: false,
            ramp_ends: None,
            driven_tx,
            driven_rx,
            rng: SharedRng::new(seed),
            next_generation: 0,
            waiting_since: None,
            timer: None,
        })
    }
}

impl<D, Req, C> Balance<D, Req, C>
where
    D: Discover,
    D::Key: Hash + Eq + Clone + fmt::Display,
{
    /// Judges answers with `classify` (the same [`Classify`] the breaker
    /// and retry use): failures count against the endpoint's health and
    /// latency, and a `Retry-After` takes it out of rotation for that long.
    pub fn classify<C2>(self, classify: C2) -> Balance<D, Req, C2> {
        Balance {
            discover: self.discover,
            discover_ended: self.discover_ended,
            strategy: self.strategy,
            classify: Arc::new(classify),
            hash: self.hash,
            weight_of: self.weight_of,
            config: self.config,
            slots: self.slots,
            views: self.views,
            by_key: self.by_key,
            free: self.free,
            unpolled: self.unpolled,
            polling: self.polling,
            routable: self.routable,
            routable_dirty: self.routable_dirty,
            table_changed: self.table_changed,
            next_backoff_end: self.next_backoff_end,
            report_buf: self.report_buf,
            outlier: self.outlier,
            slow_start: self.slow_start,
            panic: self.panic,
            panic_mode: self.panic_mode,
            ramp_ends: self.ramp_ends,
            driven_tx: self.driven_tx,
            driven_rx: self.driven_rx,
            shared: self.shared,
            rng: self.rng,
            next_generation: self.next_generation,
            waiting_since: self.waiting_since,
            timer: self.timer,
        }
    }

    /// Gives each request a hash key, for the hash strategies (ring hash,
    /// Maglev). A request the function returns `None` for is placed by the
    /// strategy's fallback.
    pub fn hash_by(mut self, key: impl Fn(&Req) -> Option<u64> + Send + Sync + 'static) -> Self {
        self.hash = Some(Arc::new(key));
        self
    }

    /// Reads each endpoint's weight from its service (for example
    /// [`Weighted::weight`](crate::Weighted::weight)). Without it every
    /// endpoint weighs 1. A weight of 0 is taken as 1 (an endpoint in the
    /// set takes traffic; remove it to drain it).
    pub fn weight_by(mut self, weight_of: fn(&D::Service) -> u32) -> Self {
        self.weight_of = weight_of;
        self.table_changed = true;
        self
    }

    /// A handle to read the endpoints' state from elsewhere.
    pub fn handle(&self) -> BalanceHandle {
        BalanceHandle::new(self.shared.clone())
    }

    /// Endpoints in the set.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn insert(&mut self, key: D::Key, service: D::Service) {
        let weight = (self.weight_of)(&service).max(1);
        self.next_generation += 1;
        let generation = self.next_generation;
        if let Some(&slot) = self.by_key.get(&key) {
            // A new service for a known endpoint: its load and health stay.
            let entry = self.slots[slot].as_mut().expect("indexed slots are full");
            if let ServiceState::Driving(task) = &entry.service {
                task.abort();
            }
            entry.generation = generation;
            entry.service = ServiceState::Unpolled(service);
            if entry.weight != weight {
                entry.weight = weight;
                if let Some(view) = &mut self.views[slot] {
                    view.weight = weight;
                    view.effective_weight = f64::from(weight);
                    if let Some(e) = self.shared.lock_table().get_mut(&view.id) {
                        e.weight = weight;
                        e.effective_weight = f64::from(weight);
                    }
                }
                self.table_changed = true;
            }
            self.unpolled.push(slot);
            self.routable_dirty = true;
            tracing::debug!(balancer = %self.config.name, endpoint = %key, "endpoint replaced");
            return;
        }
        let id: Arc<str> = Arc::from(key.to_string());
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.views.push(None);
            self.slots.len() - 1
        });
        let stats = Arc::new(EndpointStats::new(
            &self.shared.labels,
            &id,
            nanos(self.config.default_rtt) as f64,
            self.shared.now_ns(),
        ));
        let now = Instant::now();
        if let Some(outlier) = &mut self.outlier
            && let Err(e) = outlier.add(slot, now)
        {
            tracing::warn!(balancer = %self.config.name, endpoint = %key, error = %e, "endpoint not tracked by outlier detection");
        }
        self.slots[slot] = Some(Slot {
            key: key.clone(),
            generation,
            weight,
            service: ServiceState::Unpolled(service),
            stats: stats.clone(),
            backoff_until: 0,
            in_rotation_since: now,
        });
        self.start_ramp(now);
        self.shared
            .lock_table()
            .insert(id.clone(), EndpointEntry::new(stats, weight));
        self.views[slot] = Some(Endpoint {
            id,
            weight,
            effective_weight: f64::from(weight),
        });
        self.by_key.insert(key.clone(), slot);
        self.shared.endpoints_gauge.set(self.by_key.len() as f64);
        self.unpolled.push(slot);
        self.table_changed = true;
        self.routable_dirty = true;
        tracing::debug!(balancer = %self.config.name, endpoint = %key, slot, weight, "endpoint added");
    }

    fn remove(&mut self, key: &D::Key) {
        let Some(slot) = self.by_key.remove(key) else {
            return;
        };
        // Dropping the slot aborts its driver; requests in flight keep
        // their own future and finish normally.
        self.slots[slot] = None;
        if let Some(outlier) = &mut self.outlier {
            let now = Instant::now();
            for readmitted in outlier.remove(slot, now) {
                self.readmit(readmitted, now);
            }
        }
        if let Some(view) = self.views[slot].take() {
            self.shared.lock_table().remove(&view.id);
        }
        self.shared.endpoints_gauge.set(self.by_key.len() as f64);
        self.unpolled.retain(|&s| s != slot);
        self.free.push(slot);
        self.table_changed = true;
        self.routable_dirty = true;
        tracing::debug!(balancer = %self.config.name, endpoint = %key, slot, "endpoint removed");
    }

    /// Applies every change discovery has ready.
    fn poll_discover(&mut self, cx: &mut Context<'_>) -> Result<(), DiscoverError>
    where
        D: Unpin,
        D::Error: Into<BoxError>,
    {
        while !self.discover_ended {
            match Pin::new(&mut self.discover).poll_discover(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    // The set is final; keep balancing over it.
                    tracing::debug!(balancer = %self.config.name, "discovery ended");
                    self.discover_ended = true;
                }
                Poll::Ready(Some(Err(e))) => return Err(DiscoverError(e.into())),
                Poll::Ready(Some(Ok(Change::Insert(key, service)))) => self.insert(key, service),
                Poll::Ready(Some(Ok(Change::Remove(key)))) => self.remove(&key),
            }
        }
        Ok(())
    }

    /// `key`'s service failed its `poll_ready`: it is dropped until
    /// discovery inserts the endpoint again.
    fn failed(&mut self, key: &D::Key, error: &BoxError) {
        tracing::warn!(balancer = %self.config.name, endpoint = %key, %error, "endpoint failed; removed until discovery adds it again");
        self.remove(key);
    }

    /// Takes back the services driver tasks brought to readiness.
    fn collect_driven(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Some(driven)) = self.driven_rx.poll_recv(cx) {
            let Some(Some(entry)) = self.slots.get_mut(driven.slot) else {
                continue;
            };
            if entry.generation != driven.generation {
                continue; // replaced or removed meanwhile
            }
            match driven.result {
                Ok(service) => {
                    entry.service = ServiceState::Ready(service);
                    self.routable_dirty = true;
                }
                Err(e) => {
                    let key = entry.key.clone();
                    self.failed(&key, &e);
                }
            }
        }
    }

    /// Applies the answers the response futures reported.
    fn apply_reports(&mut self, at: Instant, now: u64) {
        let mut reports = std::mem::take(&mut self.report_buf);
        if self.shared.has_reports.load(Ordering::Acquire) {
            let mut queued = self
                .shared
                .reports
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            std::mem::swap(&mut *queued, &mut reports);
            self.shared.has_reports.store(false, Ordering::Release);
        }
        for report in reports.drain(..) {
            let Some(Some(entry)) = self.slots.get_mut(report.slot) else {
                continue;
            };
            if entry.generation != report.generation {
                continue;
            }
            if let Some(after) = report.retry_after {
                let until = now.saturating_add(nanos(after.min(self.config.max_retry_after)));
                entry.backoff_until = entry.backoff_until.max(until);
                if let Some(view) = &self.views[report.slot]
                    && let Some(e) = self.shared.lock_table().get_mut(&view.id)
                {
                    e.backoff_until = entry.backoff_until;
                }
                self.next_backoff_end = Some(self.next_backoff_end.map_or(until, |t| t.min(until)));
                self.routable_dirty = true;
            }
            if let Some(outlier) = &mut self.outlier
                && outlier.record(report.slot, report.outcome, at)
            {
                self.ejected(report.slot);
            }
        }
        self.report_buf = reports;
        if let Some(outlier) = &mut self.outlier
            && at >= outlier.next_evaluation()
        {
            let evaluation = outlier.evaluate(at);
            for slot in evaluation.readmitted {
                self.readmit(slot, at);
            }
            for ejection in evaluation.ejected {
                self.ejected(ejection.slot);
            }
        }
    }

    /// The outlier detector ejected `slot`.
    fn ejected(&mut self, slot: usize) {
        self.routable_dirty = true;
        self.sync_health(slot);
    }

    /// The outlier detector re-admitted `slot` at `now`: slow start begins.
    fn readmit(&mut self, slot: usize, now: Instant) {
        if let Some(Some(entry)) = self.slots.get_mut(slot) {
            entry.in_rotation_since = now;
            self.start_ramp(now);
        }
        self.routable_dirty = true;
        self.sync_health(slot);
    }

    /// Copies `slot`'s ejection state to the handle's table.
    fn sync_health(&self, slot: usize) {
        let (Some(outlier), Some(Some(view))) = (&self.outlier, self.views.get(slot)) else {
            return;
        };
        let Some(health) = outlier.health(slot) else {
            return;
        };
        if let Some(e) = self.shared.lock_table().get_mut(&view.id) {
            e.ejected_until = health.ejected_until.map(|t| self.shared.nanos_at(t));
            e.ejections = health.ejections;
        }
    }

    /// An endpoint entered rotation at `now`: its weight ramps up.
    fn start_ramp(&mut self, now: Instant) {
        if self.slow_start.is_ramping(now, now) {
            let end = self.slow_start.ends_at(now);
            self.ramp_ends = Some(self.ramp_ends.map_or(end, |e| e.max(end)));
        }
    }

    /// Scales the weights of endpoints in slow start for `now`.
    fn ramp_weights(&mut self, now: Instant) {
        let Some(ends) = self.ramp_ends else { return };
        let mut table = self.shared.lock_table();
        for (entry, view) in self.slots.iter().zip(&mut self.views) {
            let (Some(entry), Some(view)) = (entry, view) else {
                continue;
            };
            let factor = self.slow_start.factor(entry.in_rotation_since, now);
            let effective = f64::from(entry.weight) * factor;
            if effective != view.effective_weight {
                view.effective_weight = effective;
                if let Some(e) = table.get_mut(&view.id) {
                    e.effective_weight = effective;
                }
                self.table_changed = true;
            }
        }
        if now >= ends {
            self.ramp_ends = None;
        }
    }

    /// The routable set: ready endpoints that are not backing off after a
    /// `Retry-After` and not ejected, or, when fewer than the panic
    /// threshold are not ejected, ejected ones too. (A back-off is always
    /// honoured: the endpoint asked for it.)
    fn recompute_routable(&mut self, now: u64) {
        self.routable.clear();
        let mut next_end: Option<u64> = None;
        let mut healthy = 0;
        for (slot, entry) in self.slots.iter().enumerate() {
            let Some(entry) = entry else { continue };
            if entry.backoff_until > now {
                next_end =
                    Some(next_end.map_or(entry.backoff_until, |t| t.min(entry.backoff_until)));
            }
            let ejected = self.outlier.as_ref().is_some_and(|o| o.is_ejected(slot));
            healthy += usize::from(!ejected);
            if !ejected
                && entry.backoff_until <= now
                && matches!(entry.service, ServiceState::Ready(_))
            {
                self.routable.push(slot);
            }
        }
        let panic = self.panic.in_panic(healthy, self.by_key.len());
        if panic {
            self.routable.clear();
            for (slot, entry) in self.slots.iter().enumerate() {
                if let Some(entry) = entry
                    && entry.backoff_until <= now
                    && matches!(entry.service, ServiceState::Ready(_))
                {
                    self.routable.push(slot);
                }
            }
        }
        if panic != self.panic_mode {
            self.panic_mode = panic;
            self.shared.panic_gauge.set(f64::from(u8::from(panic)));
            if panic {
                tracing::warn!(balancer = %self.config.name, healthy, endpoints = self.by_key.len(), "panic threshold: balancing across every endpoint");
            } else {
                tracing::info!(balancer = %self.config.name, "panic threshold: back to healthy endpoints only");
            }
        }
        self.next_backoff_end = next_end;
        self.routable_dirty = false;
    }

    fn reset_timer(&mut self) {
        self.timer = None;
        self.waiting_since = None;
    }
}

impl<D, Req, C> Service<Req> for Balance<D, Req, C>
where
    D: Discover + Unpin,
    D::Key: Hash + Eq + Clone + fmt::Display,
    D::Error: Into<BoxError>,
    D::Service: Service<Req> + Send + 'static,
    <D::Service as Service<Req>>::Error: Into<BoxError>,
    C: Classify<<D::Service as Service<Req>>::Response, <D::Service as Service<Req>>::Error>
        + Send
        + Sync
        + 'static,
{
    type Response = <D::Service as Service<Req>>::Response;
    type Error = BoxError;
    type Future = ResponseFuture<<D::Service as Service<Req>>::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_discover(cx)?;
        self.collect_driven(cx);
        let at = Instant::now();
        let now = self.shared.nanos_at(at);
        self.apply_reports(at, now);

        // Poll the endpoints called since their last poll; one that is not
        // ready goes to a task that drives it, so it becomes ready even if
        // no request comes.
        let mut failed = Vec::new();
        let mut polling = std::mem::take(&mut self.polling);
        std::mem::swap(&mut polling, &mut self.unpolled);
        for slot in polling.drain(..) {
            let Some(entry) = self.slots[slot].as_mut() else {
                continue;
            };
            // (listed twice when replaced after a call: polled once)
            if !matches!(entry.service, ServiceState::Unpolled(_)) {
                continue;
            }
            let ServiceState::Unpolled(mut service) =
                std::mem::replace(&mut entry.service, ServiceState::Taken)
            else {
                unreachable!("matched above")
            };
            match service.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    entry.service = ServiceState::Ready(service);
                    // Usually the endpoint just called, ready again: back
                    // into the routable set without recomputing it.
                    let backing_off = entry.backoff_until > now;
                    let ejected = self.outlier.as_ref().is_some_and(|o| o.is_ejected(slot));
                    if !self.routable_dirty
                        && !backing_off
                        && (!ejected || self.panic_mode)
                        && let Err(i) = self.routable.binary_search(&slot)
                    {
                        self.routable.insert(i, slot);
                    }
                }
                Poll::Pending => {
                    entry.service = ServiceState::Driving(drive::<_, Req>(
                        service,
                        slot,
                        entry.generation,
                        &self.driven_tx,
                    ));
                    self.routable_dirty = true;
                }
                Poll::Ready(Err(e)) => failed.push((entry.key.clone(), e.into())),
            }
        }
        self.polling = polling;
        for (key, e) in failed {
            self.failed(&key, &e);
        }

        if self.next_backoff_end.is_some_and(|end| end <= now) {
            self.routable_dirty = true;
        }
        if self.routable_dirty {
            self.recompute_routable(now);
        }
        self.ramp_weights(at);
        if self.table_changed {
            self.strategy.update(&self.views);
            self.table_changed = false;
        }
        if !self.routable.is_empty() {
            self.reset_timer();
            return Poll::Ready(Ok(()));
        }

        // Nothing to send to: fail, or wait (bounded) for a change.
        let started = *self.waiting_since.get_or_insert_with(Instant::now);
        let waited = if self.config.max_wait.is_zero() {
            Duration::ZERO
        } else {
            started.elapsed()
        };
        let fail = || -> BoxError {
            if self.by_key.is_empty() {
                NoEndpoints::new(waited).into()
            } else {
                NoReadyEndpoint::new(self.by_key.len(), waited).into()
            }
        };
        if waited >= self.config.max_wait {
            let err = fail();
            self.shared.unavailable[usize::from(!self.by_key.is_empty())].increment(1);
            self.reset_timer();
            return Poll::Ready(Err(err));
        }
        // Wake at the deadline, or when a back-off ends, whichever is first.
        let mut deadline = started + self.config.max_wait;
        if let Some(end) = self.next_backoff_end {
            let end = at + Duration::from_nanos(end.saturating_sub(now));
            deadline = deadline.min(end);
        }
        if let Some(outlier) = &self.outlier {
            // an ejection may end, or an evaluation re-admit an endpoint
            deadline = deadline.min(outlier.next_evaluation());
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_ready() {
            // Re-run at once: the back-off ended or the wait is over.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let hash = self.hash.as_ref().and_then(|h| h(&req));
        let now = self.shared.now_ns();
        let loads = SlotLoads {
            slots: &self.slots,
            now,
            decay_ns: self.shared.decay_ns,
        };
        let picked = self.strategy.pick(&Pick {
            endpoints: &self.views,
            routable: &self.routable,
            hash,
            rng: &self.rng,
            loads: &loads,
        });
        let entry = picked
            .filter(|slot| self.routable.binary_search(slot).is_ok())
            .and_then(|slot| self.slots[slot].as_mut().map(|entry| (slot, entry)));
        let Some((slot, entry)) = entry else {
            // poll_ready was not called, or returned an error.
            return ResponseFuture::failed(
                NoReadyEndpoint::new(self.by_key.len(), Duration::ZERO).into(),
            );
        };
        let ServiceState::Ready(mut service) =
            std::mem::replace(&mut entry.service, ServiceState::Taken)
        else {
            unreachable!("routable slots are ready")
        };
        let fut = service.call(req);
        entry.service = ServiceState::Unpolled(service);
        self.unpolled.push(slot);
        // Not ready until polled again: out of the routable set meanwhile.
        if let Ok(i) = self.routable.binary_search(&slot) {
            self.routable.remove(i);
        }
        entry.stats.start();
        ResponseFuture::called(
            fut,
            InFlight {
                stats: entry.stats.clone(),
                shared: self.shared.clone(),
                slot,
                generation: entry.generation,
                sent_at: now,
                done: false,
            },
            self.classify.clone(),
        )
    }
}

impl<D, Req, C> fmt::Debug for Balance<D, Req, C>
where
    D: Discover,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("config", &self.config)
            .field("endpoints", &self.views)
            .field("routable", &self.routable)
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

/// Spawns a task that polls `service` until it is ready (or fails) and
/// hands it back.
fn drive<S, Req>(
    mut service: S,
    slot: usize,
    generation: u64,
    tx: &mpsc::UnboundedSender<Driven<S>>,
) -> AbortHandle
where
    S: Service<Req> + Send + 'static,
    S::Error: Into<BoxError>,
{
    let tx = tx.clone();
    tokio::spawn(async move {
        let result = poll_fn(|cx| service.poll_ready(cx)).await;
        let result = result.map(|()| service).map_err(Into::into);
        let _ = tx.send(Driven {
            slot,
            generation,
            result,
        });
    })
    .abort_handle()
}

/// Loads read at pick time, with one clock reading.
struct SlotLoads<'a, K, S> {
    slots: &'a [Option<Slot<K, S>>],
    now: u64,
    decay_ns: f64,
}

impl<K, S> Loads for SlotLoads<'_, K, S> {
    fn pending(&self, slot: usize) -> u32 {
        self.slots
            .get(slot)
            .and_then(Option::as_ref)
            .map_or(0, |e| e.stats.load.pending())
    }

    fn cost(&self, slot: usize) -> f64 {
        self.slots
            .get(slot)
            .and_then(Option::as_ref)
            .map_or(f64::INFINITY, |e| {
                e.stats.load.cost(self.now, self.decay_ns)
            })
    }
}

// === impl ResponseFuture ===

/// A request in flight to one endpoint: counted in its pending load until
/// the answer (or the future is dropped).
#[derive(Debug)]
struct InFlight {
    stats: Arc<EndpointStats>,
    shared: Arc<Shared>,
    slot: usize,
    generation: u64,
    sent_at: u64,
    done: bool,
}

impl InFlight {
    fn answered(&mut self, outcome: Outcome, retry_after: Option<Duration>) {
        let now = self.shared.now_ns();
        let mut rtt = now.saturating_sub(self.sent_at) as f64;
        if outcome == Outcome::Failure {
            rtt = rtt.max(self.shared.penalty_ns);
        }
        if outcome != Outcome::Ignored {
            self.stats.load.observe(rtt, now, self.shared.decay_ns);
        }
        if self.shared.report_all || retry_after.is_some() {
            let mut reports = self
                .shared
                .reports
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            reports.push(Report {
                slot: self.slot,
                generation: self.generation,
                outcome,
                retry_after,
            });
            self.shared.has_reports.store(true, Ordering::Release);
        }
        self.stats.finish(Some(outcome));
        self.done = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.stats.finish(None);
        }
    }
}

pin_project! {
    /// The response future of [`Balance`].
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: Option<F>,
        in_flight: Option<InFlight>,
        classify: Option<Arc<C>>,
        error: Option<BoxError>,
    }
}

impl<F, C> ResponseFuture<F, C> {
    fn failed(error: BoxError) -> Self {
        Self {
            inner: None,
            in_flight: None,
            classify: None,
            error: Some(error),
        }
    }

    fn called(inner: F, in_flight: InFlight, classify: Arc<C>) -> Self {
        Self {
            inner: Some(inner),
            in_flight: Some(in_flight),
            classify: Some(classify),
            error: None,
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl<F, T, E, C> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            let error = this
                .error
                .take()
                .unwrap_or_else(|| "balance response polled after completion".into());
            return Poll::Ready(Err(error));
        };
        let result = std::task::ready!(inner.poll(cx));
        if let (Some(in_flight), Some(classify)) = (this.in_flight.as_mut(), this.classify.as_ref())
        {
            let decision = classify.classify(&result);
            in_flight.answered(decision.outcome, decision.retry_after());
        }
        Poll::Ready(result.map_err(Into::into))
    }
}

//! Passive outlier detection: the state machine that ejects endpoints and
//! lets them back in.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge};
use rampart_core::classify::Outcome;
use rampart_core::error::ConfigError;
use rampart_core::metric_name;
use rampart_core::metrics::{InstanceLabels, labels};
use rampart_core::random::SharedRng;
use tokio::time::Instant;

use super::config::OutlierConfig;
use super::error::{HealthError, MAX_SLOT};
use super::interval::{Sample, failure_percentage_outliers, success_rate_outliers};

/// Counter of ejections, labelled with the balancer's name and `reason`.
pub const EJECTIONS_TOTAL: &str = metric_name!("balance", "ejections_total");
/// Counter of outliers detected, enforced or not (`reason` label).
pub const OUTLIERS_DETECTED_TOTAL: &str = metric_name!("balance", "outliers_detected_total");
/// Counter of enforced ejections refused by `max_ejection_percent`
/// (`reason` label).
pub const EJECTIONS_OVERFLOW_TOTAL: &str = metric_name!("balance", "ejections_overflow_total");
/// Gauge of the endpoints ejected now.
pub const EJECTED: &str = metric_name!("balance", "ejected");

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EjectReason {
    /// `consecutive_failures` failures in a row.
    ConsecutiveFailures,
    /// Success rate below the fleet's `mean − factor × stdev`.
    SuccessRate,
    /// Failures at or above `failure_percentage_threshold` percent.
    FailurePercentage,
}

impl EjectReason {
    const ALL: [EjectReason; 3] = [
        EjectReason::ConsecutiveFailures,
        EjectReason::SuccessRate,
        EjectReason::FailurePercentage,
    ];

    /// The value of the metrics' `reason` label: `consecutive_failures`,
    /// `success_rate` or `failure_percentage`.
    pub fn as_str(&self) -> &'static str {
        match self {
            EjectReason::ConsecutiveFailures => "consecutive_failures",
            EjectReason::SuccessRate => "success_rate",
            EjectReason::FailurePercentage => "failure_percentage",
        }
    }
}

/// One ejection made by [`OutlierDetector::evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// The endpoint's slot.
    pub slot: usize,
    /// Why.
    pub reason: EjectReason,
    /// When its ejection runs out.
    pub until: Instant,
}

/// What one [`OutlierDetector::evaluate`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Endpoints whose ejection ran out, back in rotation (start their slow
    /// start now), in slot order.
    pub readmitted: Vec<usize>,
    /// Endpoints ejected by the interval's statistics, success rate first,
    /// worst first within each rule.
    pub ejected: Vec<Ejection>,
}

/// A snapshot of one endpoint's passive health, for the balancer's handle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointHealth {
    /// `Some(until)` while ejected.
    pub ejected_until: Option<Instant>,
    /// Why it is ejected, while ejected.
    pub ejection_reason: Option<EjectReason>,
    /// When it was added or last re-admitted (the start of its slow start).
    pub in_rotation_since: Instant,
    /// Times it has been ejected since it was added.
    pub ejections: u64,
    /// The ejection-time multiplier: the next ejection lasts
    /// `(multiplier + 1) × base_ejection_time` (capped). It grows by one
    /// per ejection, up to the cap, and shrinks by one per interval the
    /// endpoint spends in rotation after a re-admission.
    pub multiplier: u32,
    /// Failures in a row now.
    pub consecutive_failures: u32,
    /// Requests answered in the last completed interval while in rotation.
    pub last_interval_requests: u64,
    /// Their success rate in percent; `None` without requests.
    pub last_interval_success_rate: Option<f64>,
}

#[derive(Debug)]
struct Host {
    consecutive: u32,
    successes: u64,
    failures: u64,
    ejection: Option<(Instant, EjectReason)>,
    since: Instant,
    readmitted_at: Option<Instant>,
    multiplier: u32,
    ejections: u64,
    last_requests: u64,
    last_rate: Option<f64>,
}

impl Host {
    fn new(now: Instant) -> Self {
        Self {
            consecutive: 0,
            successes: 0,
            failures: 0,
            ejection: None,
            since: now,
            readmitted_at: None,
            multiplier: 0,
            ejections: 0,
            last_requests: 0,
            last_rate: None,
        }
    }

    fn readmit(&mut self, now: Instant) {
        self.ejection = None;
        self.since = now;
        self.readmitted_at = Some(now);
        self.consecutive = 0;
        self.successes = 0;
        self.failures = 0;
    }
}

#[derive(Debug)]
struct Metrics {
    detected: [Counter; 3],
    ejections: [Counter; 3],
    overflow: [Counter; 3],
    ejected: Gauge,
}

impl Metrics {
    fn new(labels: &InstanceLabels) -> Self {
        let by_reason = |name: &'static str| {
            EjectReason::ALL
                .map(|r| metrics::counter!(name, labels.with(labels::REASON, r.as_str())))
        };
        Self {
            detected: by_reason(OUTLIERS_DETECTED_TOTAL),
            ejections: by_reason(EJECTIONS_TOTAL),
            overflow: by_reason(EJECTIONS_OVERFLOW_TOTAL),
            ejected: metrics::gauge!(EJECTED, labels.to_vec()),
        }
    }
}

/// Passive outlier detection over the endpoints of one balancer, by slot.
///
/// A plain state machine: it never reads a clock (every call takes `now`)
/// and never spawns; the balancer owns it, feeds it each answer's
/// [`Outcome`], calls [`evaluate`](Self::evaluate) at
/// [`next_evaluation`](Self::next_evaluation) and routes around the slots
/// for which [`is_ejected`](Self::is_ejected) is true.
///
/// - **Consecutive failures**: the `consecutive_failures`-th failure in a
///   row ejects at once (then the count starts again from 0, ejected or
///   not). A success resets it; an [`Outcome::Ignored`] counts for nothing.
/// - **Every `interval`**, [`evaluate`](Self::evaluate) judges the
///   interval's answers of the endpoints in rotation: success rate below
///   `mean − success_rate_stdev_factor × stdev`, then failure percentage
///   at or above `failure_percentage_threshold`, each only among endpoints
///   with the rule's request volume and when at least its minimum number
///   of such endpoints exists. Then the counts start again.
/// - Each detection is enforced with its `enforcing_*` probability (a
///   seeded draw) and refused when it would eject more than
///   [`OutlierConfig::max_ejected`] endpoints: the pool is never emptied by
///   ejections, even when endpoints are removed (see
///   [`remove`](Self::remove)).
/// - An ejection lasts `min(multiplier × base_ejection_time,
///   max_ejection_time)` plus a seeded jitter in
///   `[0, max_ejection_time_jitter]`; `multiplier` grows by one per
///   ejection until that product reaches the cap, and shrinks by one per
///   interval the endpoint then spends in rotation (Envoy's rule).
/// - While ejected, an endpoint's answers (requests that were in flight)
///   are not recorded. Re-admission clears its counts.
/// - Answers for an empty slot (an endpoint already removed) are ignored.
///   A slot reused by a new endpoint would be charged with the old one's
///   late answers: the balancer tags requests if that matters.
///
/// ```
/// use rampart_balance::health::{OutlierConfig, OutlierDetector};
/// use rampart_core::Outcome;
/// use std::time::Duration;
/// use tokio::time::Instant;
///
/// let cfg = OutlierConfig::new().consecutive_failures(3);
/// let t0 = Instant::now();
/// let mut od = OutlierDetector::new(cfg, "api", 7, t0).unwrap();
/// for slot in 0..4 {
///     od.add(slot, t0).unwrap();
/// }
/// assert!(!od.record(2, Outcome::Failure, t0));
/// assert!(!od.record(2, Outcome::Failure, t0));
/// assert!(od.record(2, Outcome::Failure, t0)); // ejected for 30 s
/// assert!(od.is_ejected(2));
///
/// let t1 = t0 + Duration::from_secs(30);
/// assert_eq!(od.next_evaluation(), t0 + Duration::from_secs(10));
/// assert_eq!(od.evaluate(t1).readmitted, [2]);
/// assert!(!od.is_ejected(2));
/// ```
#[derive(Debug)]
pub struct OutlierDetector {
    config: OutlierConfig,
    hosts: Vec<Option<Host>>,
    live: usize,
    ejected: usize,
    next_tick: Instant,
    rng: SharedRng,
    metrics: Metrics,
    name: Arc<str>,
}

impl OutlierDetector {
    /// A detector with no endpoints. `name` (the balancer's; may be empty)
    /// labels its metrics and logs; `seed` starts its random draws
    /// (enforcement and jitter), so a test that fixes it repeats; `now`
    /// starts the first interval.
    pub fn new(
        config: OutlierConfig,
        name: &str,
        seed: u64,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let metrics = Metrics::new(&InstanceLabels::new(name));
        metrics.ejected.set(0.0);
        Ok(Self {
            next_tick: now + config.interval,
            config,
            hosts: Vec::new(),
            live: 0,
            ejected: 0,
            rng: SharedRng::new(seed),
            metrics,
            name: name.into(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// Endpoints known.
    pub fn len(&self) -> usize {
        self.live
    }

    /// `true` without endpoints.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Endpoints ejected now.
    pub fn ejected_count(&self) -> usize {
        self.ejected
    }

    /// How many endpoints may be ejected at once now:
    /// [`OutlierConfig::max_ejected`] of [`len`](Self::len).
    pub fn max_ejected(&self) -> usize {
        self.config.max_ejected(self.live)
    }

    /// Starts tracking an endpoint in `slot`, in rotation since `now`.
    /// Refused if the slot is taken or above [`MAX_SLOT`].
    pub fn add(&mut self, slot: usize, now: Instant) -> Result<(), HealthError> {
        if slot > MAX_SLOT {
            return Err(HealthError::SlotOutOfRange { slot });
        }
        if self.hosts.len() <= slot {
            self.hosts.resize_with(slot + 1, || None);
        }
        let entry = &mut self.hosts[slot];
        if entry.is_some() {
            return Err(HealthError::SlotTaken { slot });
        }
        *entry = Some(Host::new(now));
        self.live += 1;
        Ok(())
    }

    /// Forgets the endpoint in `slot` (nothing if the slot is empty).
    ///
    /// A smaller pool allows fewer ejections; if the endpoints still
    /// ejected are now more than [`max_ejected`](Self::max_ejected), those
    /// whose ejection would end first are re-admitted at `now` and returned
    /// (start their slow start), so the pool is never left all ejected.
    pub fn remove(&mut self, slot: usize, now: Instant) -> Vec<usize> {
        let Some(host) = self.hosts.get_mut(slot).and_then(Option::take) else {
            return Vec::new();
        };
        self.live -= 1;
        if host.ejection.is_some() {
            self.ejected -= 1;
        }
        let mut readmitted = Vec::new();
        while self.ejected > self.max_ejected() {
            let first = self
                .hosts
                .iter()
                .enumerate()
                .filter_map(|(slot, h)| Some((h.as_ref()?.ejection?.0, slot)))
                .min();
            let Some((_, slot)) = first else { break };
            self.readmit(slot, now);
            readmitted.push(slot);
        }
        self.metrics.ejected.set(self.ejected as f64);
        readmitted
    }

    /// Records one answer of the endpoint in `slot`; `true` when it ejected
    /// the endpoint (consecutive failures). Answers for an empty slot or an
    /// ejected endpoint, and [`Outcome::Ignored`], are not recorded.
    pub fn record(&mut self, slot: usize, outcome: Outcome, now: Instant) -> bool {
        let threshold = self.config.consecutive_failures;
        let Some(host) = self.hosts.get_mut(slot).and_then(Option::as_mut) else {
            return false;
        };
        if host.ejection.is_some() {
            return false;
        }
        match outcome {
            Outcome::Ignored => false,
            Outcome::Success => {
                host.successes = host.successes.saturating_add(1);
                host.consecutive = 0;
                false
            }
            Outcome::Failure => {
                host.failures = host.failures.saturating_add(1);
                host.consecutive = host.consecutive.saturating_add(1);
                if host.consecutive < threshold {
                    return false;
                }
                host.consecutive = 0;
                self.try_eject(slot, EjectReason::ConsecutiveFailures, now)
                    .is_some()
            }
        }
    }

    /// When the balancer should call [`evaluate`](Self::evaluate) next: the
    /// end of the current interval, or the end of an ejection if sooner.
    pub fn next_evaluation(&self) -> Instant {
        self.hosts
            .iter()
            .filter_map(|h| Some(h.as_ref()?.ejection?.0))
            .fold(self.next_tick, Instant::min)
    }

    /// Re-admits the endpoints whose ejection has run out by `now`; then,
    /// if the interval has ended, judges its statistics (success rate, then
    /// failure percentage), decays multipliers and starts the next
    /// interval at `now`. Calling it early does only the first part;
    /// calling it late makes that interval longer.
    pub fn evaluate(&mut self, now: Instant) -> Evaluation {
        let mut out = Evaluation::default();
        for slot in 0..self.hosts.len() {
            let expired = self.hosts[slot]
                .as_ref()
                .and_then(|h| h.ejection)
                .is_some_and(|(until, _)| until <= now);
            if expired {
                self.readmit(slot, now);
                out.readmitted.push(slot);
            }
        }
        if now >= self.next_tick {
            self.next_tick = now + self.config.interval;
            let samples = self.close_interval(now);
            self.judge(&samples, now, &mut out);
        }
        self.metrics.ejected.set(self.ejected as f64);
        out
    }

    /// `true` while the endpoint in `slot` is ejected. An ejection that has
    /// run out lasts until the next [`evaluate`](Self::evaluate).
    pub fn is_ejected(&self, slot: usize) -> bool {
        self.host(slot).is_some_and(|h| h.ejection.is_some())
    }

    /// A snapshot of the endpoint in `slot`; `None` for an empty slot.
    pub fn health(&self, slot: usize) -> Option<EndpointHealth> {
        self.host(slot).map(|h| EndpointHealth {
            ejected_until: h.ejection.map(|(until, _)| until),
            ejection_reason: h.ejection.map(|(_, reason)| reason),
            in_rotation_since: h.since,
            ejections: h.ejections,
            multiplier: h.multiplier,
            consecutive_failures: h.consecutive,
            last_interval_requests: h.last_requests,
            last_interval_success_rate: h.last_rate,
        })
    }

    fn host(&self, slot: usize) -> Option<&Host> {
        self.hosts.get(slot).and_then(Option::as_ref)
    }

    /// Takes the interval's counts of the endpoints in rotation, keeps them
    /// for snapshots and decays the multipliers of endpoints that stayed in
    /// rotation for a whole interval since their re-admission.
    fn close_interval(&mut self, now: Instant) -> Vec<Sample> {
        let interval = self.config.interval;
        let mut samples = Vec::with_capacity(self.live);
        for (slot, host) in self.hosts.iter_mut().enumerate() {
            let Some(host) = host else { continue };
            let sample = Sample {
                slot,
                successes: std::mem::take(&mut host.successes),
                failures: std::mem::take(&mut host.failures),
            };
            host.last_requests = sample.requests();
            host.last_rate = sample.success_rate();
            if host.ejection.is_some() {
                continue;
            }
            let settled = host
                .readmitted_at
                .is_none_or(|at| now.saturating_duration_since(at) >= interval);
            if settled {
                host.multiplier = host.multiplier.saturating_sub(1);
            }
            samples.push(sample);
        }
        samples
    }

    fn judge(&mut self, samples: &[Sample], now: Instant, out: &mut Evaluation) {
        let c = &self.config;
        let by_rate = success_rate_outliers(
            samples,
            u64::from(c.success_rate_request_volume),
            c.success_rate_minimum_hosts as usize,
            c.success_rate_stdev_factor,
        );
        let by_failures = failure_percentage_outliers(
            samples,
            u64::from(c.failure_percentage_request_volume),
            c.failure_percentage_minimum_hosts as usize,
            f64::from(c.failure_percentage_threshold),
        );
        let rules = [
            (EjectReason::SuccessRate, by_rate),
            (EjectReason::FailurePercentage, by_failures),
        ];
        for (reason, slots) in rules {
            for slot in slots {
                if self.is_ejected(slot) {
                    continue;
                }
                if let Some(until) = self.try_eject(slot, reason, now) {
                    out.ejected.push(Ejection {
                        slot,
                        reason,
                        until,
                    });
                }
            }
        }
    }

    /// A detection: enforce it with its probability, within the cap.
    fn try_eject(&mut self, slot: usize, reason: EjectReason, now: Instant) -> Option<Instant> {
        let i = reason as usize;
        self.metrics.detected[i].increment(1);
        let enforcing = match reason {
            EjectReason::ConsecutiveFailures => self.config.enforcing_consecutive_failures,
            EjectReason::SuccessRate => self.config.enforcing_success_rate,
            EjectReason::FailurePercentage => self.config.enforcing_failure_percentage,
        };
        if !self.draw_percent(enforcing) {
            tracing::debug!(balancer = %self.name, slot, reason = reason.as_str(), "outlier detected, not enforced");
            return None;
        }
        if self.ejected >= self.max_ejected() {
            self.metrics.overflow[i].increment(1);
            tracing::debug!(balancer = %self.name, slot, reason = reason.as_str(), ejected = self.ejected, "outlier not ejected: max_ejection_percent reached");
            return None;
        }
        let base = self.config.base_ejection_time;
        let max = self.config.max_ejection_time;
        let jitter = self.jitter();
        let host = self.hosts[slot].as_mut()?;
        if base.saturating_mul(host.multiplier) < max {
            host.multiplier += 1;
        }
        host.ejections += 1;
        let duration = base.saturating_mul(host.multiplier).min(max) + jitter;
        let until = now + duration;
        host.ejection = Some((until, reason));
        host.consecutive = 0;
        host.successes = 0;
        host.failures = 0;
        self.ejected += 1;
        self.metrics.ejections[i].increment(1);
        self.metrics.ejected.set(self.ejected as f64);
        tracing::info!(balancer = %self.name, slot, reason = reason.as_str(), ?duration, "endpoint ejected");
        Some(until)
    }

    fn readmit(&mut self, slot: usize, now: Instant) {
        if let Some(host) = self.hosts[slot].as_mut()
            && host.ejection.is_some()
        {
            host.readmit(now);
            self.ejected -= 1;
            tracing::info!(balancer = %self.name, slot, "endpoint re-admitted");
        }
    }

    /// `true` with probability `percent`/100 (no draw at 0 or 100).
    fn draw_percent(&self, percent: u32) -> bool {
        match percent {
            0 => false,
            100.. => true,
            p => self.rng.next_u64() % 100 < u64::from(p),
        }
    }

    /// A draw in `[0, max_ejection_time_jitter]` (no draw when it is 0).
    fn jitter(&self) -> Duration {
        let max = self.config.max_ejection_time_jitter;
        if max.is_zero() {
            Duration::ZERO
        } else {
            max.mul_f64(self.rng.unit())
        }
    }
}

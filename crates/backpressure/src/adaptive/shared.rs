//! [`Shared`]: one adaptive limiter (limit, calls in flight, wake-ups,
//! counters, metric handles) and the [`Permit`] of a call in flight.

use std::fmt;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::{Counter, Gauge};
use rampart_core::metric_name;
use rampart_core::metrics::{InstanceLabels, labels};
use tokio::sync::Notify;

use crate::adaptive::config::{AdaptiveLimitConfig, Algorithm, Params};
use crate::error::{Overloaded, Reason};

/// One call, in units of `Shared::limit`.
const SCALE: u64 = 1024;

pub(crate) struct Shared {
    name: String,
    pub(crate) params: Params,
    /// The limit in fixed point (× [`SCALE`]), so that it can grow by a
    /// fraction of a call per sample.
    limit: AtomicU64,
    in_flight: AtomicUsize,
    /// Woken whenever a permit is released or the limit grows.
    pub(crate) freed: Arc<Notify>,
    /// Bumped by every AIMD decrease (and every Vegas change); a drop only
    /// decreases the limit when its call started after the last decrease
    /// (at most one decrease per round trip, as TCP does), so that a burst
    /// of slow calls caused by one overload does not collapse the limit.
    generation: AtomicU64,
    rejected: AtomicU64,
    drops: AtomicU64,
    /// Vegas's state; its updates take this one short lock.
    vegas: Mutex<Vegas>,
    metrics: Metrics,
}

/// Vegas's state between samples.
#[derive(Debug, Default)]
struct Vegas {
    /// The shortest latency seen since the limiter was built: the inner
    /// service's latency without queueing.
    rtt_min: Option<Duration>,
}

struct Metrics {
    limit: Gauge,
    in_flight: Gauge,
    rejected: Counter,
    drops: Counter,
}

impl Shared {
    pub(crate) fn new(config: AdaptiveLimitConfig, labels: &InstanceLabels) -> Self {
        let params = config.params();
        let metrics = Metrics {
            limit: metrics::gauge!(
                metric_name!("backpressure", "concurrency_limit"),
                labels.to_vec()
            ),
            in_flight: metrics::gauge!(
                metric_name!("backpressure", "concurrency_in_flight"),
                labels.to_vec()
            ),
            rejected: metrics::counter!(
                metric_name!("backpressure", "rejected_total"),
                labels.with(labels::REASON, Reason::ConcurrencyLimit.as_str())
            ),
            drops: metrics::counter!(
                metric_name!("backpressure", "concurrency_drops_total"),
                labels.to_vec()
            ),
        };
        metrics.limit.set(params.initial_limit as f64);
        Self {
            name: config.name_ref().to_owned(),
            params,
            limit: AtomicU64::new(params.initial_limit as u64 * SCALE),
            in_flight: AtomicUsize::new(0),
            freed: Arc::new(Notify::new()),
            generation: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            vegas: Mutex::new(Vegas::default()),
            metrics,
        }
    }

    /// `true` when a permit is free now.
    pub(crate) fn has_room(&self) -> bool {
        self.in_flight.load(Acquire) < self.limit()
    }

    /// A permit if fewer than `limit` calls are in flight: one CAS loop.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut cur = self.in_flight.load(Acquire);
        loop {
            if cur >= self.limit() {
                return None;
            }
            match self
                .in_flight
                .compare_exchange_weak(cur, cur + 1, AcqRel, Acquire)
            {
                Ok(_) => return Some(self.permit(cur + 1)),
                Err(actual) => cur = actual,
            }
        }
    }

    fn permit(self: &Arc<Self>, in_flight: usize) -> Permit {
        self.metrics.in_flight.increment(1.0);
        Permit {
            shared: self.clone(),
            in_flight,
            generation: self.generation.load(Acquire),
        }
    }

    pub(crate) fn reject(&self) -> Overloaded {
        self.rejected.fetch_add(1, Relaxed);
        self.metrics.rejected.increment(1);
        tracing::debug!(
            name = %self.name,
            limit = self.limit(),
            in_flight = self.in_flight(),
            reason = Reason::ConcurrencyLimit.as_str(),
            "concurrency limit reached, call rejected"
        );
        Overloaded::new(Reason::ConcurrencyLimit, None)
    }

    /// Feeds one completed call to the algorithm.
    fn sample(&self, latency: Duration, failed: bool, in_flight: usize, generation: u64) {
        let dropped = failed || latency > self.params.latency_threshold;
        if dropped {
            self.drops.fetch_add(1, Relaxed);
            self.metrics.drops.increment(1);
        }
        match self.params.algorithm {
            Algorithm::Aimd => self.aimd(dropped, in_flight, generation),
            Algorithm::Vegas => self.vegas(latency, dropped, in_flight, generation),
        }
    }

    /// One Vegas step, under the Vegas lock; at most one change per round
    /// trip (a sample whose call started before the last change only
    /// updates the minimum latency).
    fn vegas(&self, latency: Duration, dropped: bool, in_flight: usize, generation: u64) {
        let p = &self.params;
        let mut state = self.vegas.lock().unwrap_or_else(PoisonError::into_inner);
        let limit = self.limit();
        let rtt_min = match state.rtt_min {
            Some(min) if latency >= min => min,
            _ => {
                state.rtt_min = Some(latency);
                return;
            }
        };
        if self.generation.load(Acquire) != generation {
            return;
        }
        let log = (limit as f64).log10().floor().max(1.0);
        let lf = limit as f64;
        let next = if dropped {
            lf - log
        } else if in_flight * 2 < limit {
            // Too little load to learn anything.
            return;
        } else {
            let ratio = rtt_min.as_secs_f64() / latency.as_secs_f64().max(f64::MIN_POSITIVE);
            let queue = (lf * (1.0 - ratio)).ceil();
            if queue <= log {
                lf + 6.0 * log
            } else if queue < 3.0 * log {
                lf + log
            } else if queue > 6.0 * log {
                lf - log
            } else {
                return;
            }
        };
        let next = (next.max(p.min_limit as f64).min(p.max_limit as f64)) as u64;
        self.generation.fetch_add(1, AcqRel);
        self.limit.store(next * SCALE, Release);
        self.metrics.limit.set(next as f64);
        if next as usize > limit {
            self.freed.notify_waiters();
        }
    }

    /// One AIMD step.
    fn aimd(&self, dropped: bool, in_flight: usize, generation: u64) {
        let p = &self.params;
        if dropped
            && self
                .generation
                .compare_exchange(generation, generation + 1, AcqRel, Acquire)
                .is_err()
        {
            // The limit already went down since this call started.
            return;
        }
        let (min, max) = (p.min_limit as u64 * SCALE, p.max_limit as u64 * SCALE);
        let update = |fp: u64| -> Option<u64> {
            let limit = fp / SCALE;
            let next = if dropped {
                // Multiplicative decrease; `as` saturates and the product
                // is below `fp`.
                ((fp as f64 * p.backoff_ratio) as u64).max(min)
            } else if in_flight as u64 * 2 >= limit {
                // Additive increase of about one call per round trip: each
                // of the `limit` calls of a round trip adds 1 / limit.
                (fp + (SCALE / limit.max(1)).max(1)).min(max)
            } else {
                return None;
            };
            (next != fp).then_some(next)
        };
        if let Ok(previous) = self.limit.fetch_update(AcqRel, Acquire, update) {
            let (previous, limit) = (
                previous / SCALE,
                update(previous).unwrap_or(previous) / SCALE,
            );
            self.metrics.limit.set(limit as f64);
            if limit > previous {
                self.freed.notify_waiters();
            }
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn limit(&self) -> usize {
        usize::try_from(self.limit.load(Acquire) / SCALE).unwrap_or(usize::MAX)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Relaxed)
    }

    pub(crate) fn drops(&self) -> u64 {
        self.drops.load(Relaxed)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("name", &self.name)
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("params", &self.params)
            .finish()
    }
}

// === impl Permit ===

/// The right of one call to be in flight. Dropping it releases it, and
/// wakes callers waiting for one.
pub(crate) struct Permit {
    shared: Arc<Shared>,
    /// Calls in flight when this one started, itself included.
    in_flight: usize,
    /// The decrease generation when this call started.
    generation: u64,
}

impl Permit {
    /// The call completed: feeds the sample to the limit, then releases.
    pub(crate) fn complete(self, latency: Duration, failed: bool) {
        self.shared
            .sample(latency, failed, self.in_flight, self.generation);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, AcqRel);
        self.shared.metrics.in_flight.decrement(1.0);
        self.shared.freed.notify_waiters();
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("limiter", &self.shared.name)
            .finish()
    }
}

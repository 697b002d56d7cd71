//! One bulkhead's state ([`Shared`]: the permit core, its limits, counters
//! and metric handles), the permit guard ([`Permit`]) and the guard of a
//! queued call ([`Waiting`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use rampart_core::metric_name;
use rampart_core::metrics::{InstanceLabels, labels};
use tokio::time::Instant;

use crate::config::Limits;
use crate::core::{Core, Entry, Waiter};
use crate::error::BulkheadFull;

/// `reason` label: no permit was free and no queue slot was left.
const FULL: &str = "full";
/// `reason` label: the call queued for the whole max wait.
const MAX_WAIT: &str = "max_wait";

/// The state of one bulkhead, shared by its layer, services, handles,
/// permits and queued calls.
pub(crate) struct Shared {
    core: Core,
    max_wait: Duration,
    max_queued: usize,
    name: String,
    rejected: AtomicU64,
    metrics: Metrics,
}

/// Metric handles, registered once per instance.
struct Metrics {
    in_flight: Gauge,
    queued: Gauge,
    max_concurrent: Gauge,
    admitted: Counter,
    rejected_full: Counter,
    rejected_max_wait: Counter,
    wait: Histogram,
}

/// How a call starts.
pub(crate) enum Start {
    /// A permit was free.
    Admitted(Permit),
    /// The call is queued for a permit.
    Wait(Waiting),
    /// No permit and no queue slot.
    Rejected(BulkheadFull),
}

// === impl Shared ===

impl Shared {
    pub(crate) fn new(name: &str, limits: Limits, labels: &InstanceLabels) -> Self {
        let metrics = Metrics {
            in_flight: metrics::gauge!(metric_name!("bulkhead", "in_flight"), labels.to_vec()),
            queued: metrics::gauge!(metric_name!("bulkhead", "queued"), labels.to_vec()),
            max_concurrent: metrics::gauge!(
                metric_name!("bulkhead", "max_concurrent"),
                labels.to_vec()
            ),
            admitted: metrics::counter!(
                metric_name!("bulkhead", "admitted_total"),
                labels.to_vec()
            ),
            rejected_full: metrics::counter!(
                metric_name!("bulkhead", "rejected_total"),
                labels.with(labels::REASON, FULL)
            ),
            rejected_max_wait: metrics::counter!(
                metric_name!("bulkhead", "rejected_total"),
                labels.with(labels::REASON, MAX_WAIT)
            ),
            wait: metrics::histogram!(metric_name!("bulkhead", "wait_seconds"), labels.to_vec()),
        };
        metrics.max_concurrent.set(limits.max_concurrent as f64);
        Self {
            core: Core::new(limits.max_concurrent),
            max_wait: limits.max_wait,
            max_queued: limits.max_queued,
            name: name.to_owned(),
            rejected: AtomicU64::new(0),
            metrics,
        }
    }

    /// A permit if one is free: one CAS, no lock, no allocation. Returns
    /// in a register, so the common case moves no larger value around.
    #[inline]
    pub(crate) fn try_admit(self: &Arc<Self>) -> Option<Permit> {
        self.core
            .try_acquire()
            .then(|| Permit::new(Arc::clone(self)))
    }

    /// Starts a call: a permit at once (one CAS, no lock, no allocation), a
    /// place in the queue, or a rejection.
    pub(crate) fn start(self: &Arc<Self>) -> Start {
        if self.core.try_acquire() {
            return Start::Admitted(Permit::new(self.clone()));
        }
        if self.max_queued == 0 {
            return Start::Rejected(self.reject(Duration::ZERO, FULL));
        }
        match self.core.acquire_or_enqueue(self.max_queued) {
            Entry::Admitted => Start::Admitted(Permit::new(self.clone())),
            Entry::QueueFull => Start::Rejected(self.reject(Duration::ZERO, FULL)),
            Entry::Queued(waiter) => {
                self.metrics.queued.increment(1.0);
                Start::Wait(Waiting {
                    shared: self.clone(),
                    waiter: Some(waiter),
                    since: Instant::now(),
                })
            }
        }
    }

    fn reject(&self, waited: Duration, reason: &'static str) -> BulkheadFull {
        self.rejected.fetch_add(1, Relaxed);
        if reason == FULL {
            self.metrics.rejected_full.increment(1);
        } else {
            self.metrics.rejected_max_wait.increment(1);
        }
        let max_concurrent = self.core.limit();
        tracing::debug!(
            name = %self.name,
            max_concurrent,
            in_flight = self.core.in_flight(),
            queued = self.core.queued(),
            ?waited,
            reason,
            "bulkhead full, call rejected"
        );
        BulkheadFull::new(max_concurrent, waited)
    }

    pub(crate) fn max_wait(&self) -> Duration {
        self.max_wait
    }

    pub(crate) fn max_queued(&self) -> usize {
        self.max_queued
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn limit(&self) -> usize {
        self.core.limit()
    }

    pub(crate) fn set_limit(&self, limit: usize) {
        self.core.set_limit(limit);
        self.metrics.max_concurrent.set(limit as f64);
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.core.in_flight()
    }

    pub(crate) fn queued(&self) -> usize {
        self.core.queued()
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Relaxed)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.name)
            .field("max_concurrent", &self.core.limit())
            .field("in_flight", &self.core.in_flight())
            .field("queued", &self.core.queued())
            .field("max_wait", &self.max_wait)
            .field("max_queued", &self.max_queued)
            .finish()
    }
}

// === impl Permit ===

/// One of a bulkhead's permits: the right of one call to be in flight.
///
/// Dropping it returns the permit (to the first queued call, if any). A
/// [`ReleasePolicy`](crate::ReleasePolicy) receives it with the response
/// and decides how long it lives.
pub struct Permit {
    shared: Arc<Shared>,
}

impl Permit {
    fn new(shared: Arc<Shared>) -> Self {
        shared.metrics.admitted.increment(1);
        shared.metrics.in_flight.increment(1.0);
        Self { shared }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.metrics.in_flight.decrement(1.0);
        self.shared.core.release();
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("bulkhead", &self.shared.name)
            .finish()
    }
}

// === impl Waiting ===

/// A call queued for a permit. Dropping it leaves the queue, and passes on
/// a permit granted to it in the meantime.
pub(crate) struct Waiting {
    shared: Arc<Shared>,
    waiter: Option<crate::sync::Arc<Waiter>>,
    since: Instant,
}

impl Waiting {
    /// Ready with the permit once one was granted to this call.
    pub(crate) fn poll_acquire(&mut self, cx: &mut Context<'_>) -> Poll<Permit> {
        match &self.waiter {
            Some(waiter) if waiter.poll_granted(cx.waker()) => {
                self.waiter = None;
                Poll::Ready(self.admit())
            }
            _ => Poll::Pending,
        }
    }

    /// The max wait is over: leaves the queue and rejects the call, unless
    /// a permit was granted at the last moment.
    pub(crate) fn give_up(&mut self) -> Result<Permit, BulkheadFull> {
        let Some(waiter) = self.waiter.take() else {
            // Only after the permit was taken already; nothing is held.
            return Err(BulkheadFull::new(self.shared.limit(), self.since.elapsed()));
        };
        if self.shared.core.cancel(&waiter) {
            return Ok(self.admit());
        }
        let waited = self.since.elapsed();
        self.shared.metrics.queued.decrement(1.0);
        self.shared.metrics.wait.record(waited.as_secs_f64());
        Err(self.shared.reject(waited, MAX_WAIT))
    }

    fn admit(&self) -> Permit {
        self.shared.metrics.queued.decrement(1.0);
        self.shared
            .metrics
            .wait
            .record(self.since.elapsed().as_secs_f64());
        Permit::new(self.shared.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            self.shared.metrics.queued.decrement(1.0);
            if self.shared.core.cancel(&waiter) {
                // Granted but never used: pass it on.
                self.shared.core.release();
            }
        }
    }
}

impl fmt::Debug for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiting")
            .field("bulkhead", &self.shared.name)
            .field("since", &self.since)
            .finish()
    }
}

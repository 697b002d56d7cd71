//! [`Shared`]: one queue's depth accounting, wake-ups, counters and metric
//! handles, and the [`Slot`] a queued call holds.

use std::fmt;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use rampart_core::metric_name;
use rampart_core::metrics::{InstanceLabels, labels};
use tokio::sync::Notify;

use crate::admission::Admission;
use crate::error::{Overloaded, QueueClosed, Reason};

pub(crate) struct Shared {
    name: String,
    capacity: usize,
    admission: Admission,
    /// Calls queued, not yet handed to the inner service.
    depth: AtomicUsize,
    /// Woken whenever a slot frees.
    pub(crate) freed: Arc<Notify>,
    rejected: AtomicU64,
    shed: AtomicU64,
    closed: OnceLock<QueueClosed>,
    metrics: Metrics,
}

struct Metrics {
    depth: Gauge,
    rejected: Counter,
    shed: Counter,
    sojourn: Histogram,
}

impl Shared {
    pub(crate) fn new(
        name: &str,
        capacity: usize,
        admission: Admission,
        labels: &InstanceLabels,
    ) -> Self {
        let metrics = Metrics {
            depth: metrics::gauge!(metric_name!("backpressure", "queue_depth"), labels.to_vec()),
            rejected: metrics::counter!(
                metric_name!("backpressure", "rejected_total"),
                labels.with(labels::REASON, Reason::QueueFull.as_str())
            ),
            shed: metrics::counter!(
                metric_name!("backpressure", "rejected_total"),
                labels.with(labels::REASON, Reason::Shed.as_str())
            ),
            sojourn: metrics::histogram!(
                metric_name!("backpressure", "queue_sojourn_seconds"),
                labels.to_vec()
            ),
        };
        Self {
            name: name.to_owned(),
            capacity,
            admission,
            depth: AtomicUsize::new(0),
            freed: Arc::new(Notify::new()),
            rejected: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            closed: OnceLock::new(),
            metrics,
        }
    }

    /// `true` when a slot is free now.
    pub(crate) fn has_room(&self) -> bool {
        self.depth.load(Acquire) < self.capacity
    }

    /// Takes a slot if one is free: one CAS loop.
    pub(crate) fn try_reserve(self: &Arc<Self>) -> Option<Slot> {
        let mut cur = self.depth.load(Acquire);
        loop {
            if cur >= self.capacity {
                return None;
            }
            match self
                .depth
                .compare_exchange_weak(cur, cur + 1, AcqRel, Acquire)
            {
                Ok(_) => return Some(self.slot()),
                Err(actual) => cur = actual,
            }
        }
    }

    fn slot(self: &Arc<Self>) -> Slot {
        self.metrics.depth.increment(1.0);
        Slot {
            shared: self.clone(),
        }
    }

    pub(crate) fn reject(&self) -> Overloaded {
        self.rejected.fetch_add(1, Relaxed);
        self.metrics.rejected.increment(1);
        tracing::debug!(
            name = %self.name,
            capacity = self.capacity,
            depth = self.depth(),
            reason = Reason::QueueFull.as_str(),
            "queue full, call rejected"
        );
        Overloaded::new(Reason::QueueFull, None)
    }

    pub(crate) fn shed(&self, sojourn: Duration) -> Overloaded {
        self.shed.fetch_add(1, Relaxed);
        self.metrics.shed.increment(1);
        tracing::debug!(
            name = %self.name,
            ?sojourn,
            depth = self.depth(),
            reason = Reason::Shed.as_str(),
            "standing queue, call shed"
        );
        Overloaded::new(Reason::Shed, None)
    }

    pub(crate) fn record_sojourn(&self, sojourn: Duration) {
        self.metrics.sojourn.record(sojourn.as_secs_f64());
    }

    /// Records why the worker stopped; the first reason wins.
    pub(crate) fn close(&self, closed: QueueClosed) -> QueueClosed {
        self.closed.get_or_init(|| closed).clone()
    }

    pub(crate) fn closed(&self) -> QueueClosed {
        self.close(QueueClosed::new(None))
    }

    pub(crate) fn admission(&self) -> Admission {
        self.admission
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Relaxed)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Relaxed)
    }

    pub(crate) fn shed_count(&self) -> u64 {
        self.shed.load(Relaxed)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("depth", &self.depth())
            .field("admission", &self.admission)
            .finish()
    }
}

// === impl Slot ===

/// One place in the queue. Dropping it frees the place and wakes callers
/// waiting for one.
pub(crate) struct Slot {
    shared: Arc<Shared>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.depth.fetch_sub(1, AcqRel);
        self.shared.metrics.depth.decrement(1.0);
        self.shared.freed.notify_waiters();
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("queue", &self.shared.name)
            .finish()
    }
}

//! [`Shared`]: one limiter instance (its GCRA state, admission, counters
//! and metric handles) and the [`Reservation`] of a waiting call.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use metrics::{Counter, Gauge};
use rampart_core::metric_name;
use rampart_core::metrics::{InstanceLabels, labels};

use crate::admission::Admission;
use crate::error::{Overloaded, Reason};
use crate::rate::gcra::{Gcra, Verdict};

pub(crate) struct Shared {
    name: String,
    pub(crate) gcra: Gcra,
    admission: Admission,
    admitted: AtomicU64,
    rejected: AtomicU64,
    metrics: Metrics,
}

struct Metrics {
    admitted: Counter,
    delayed: Counter,
    rejected: Counter,
    rate: Gauge,
}

/// How a call starts.
pub(crate) enum Start {
    /// Admitted now.
    Now,
    /// Admitted at a slot this far ahead; the reservation refunds the
    /// token if dropped before the slot.
    After(Duration, Reservation),
    /// Refused.
    Refused(Overloaded),
}

impl Shared {
    pub(crate) fn new(
        name: &str,
        interval: Duration,
        burst: u32,
        admission: Admission,
        labels: &InstanceLabels,
    ) -> Self {
        let metrics = Metrics {
            admitted: metrics::counter!(
                metric_name!("backpressure", "rate_admitted_total"),
                labels.to_vec()
            ),
            delayed: metrics::counter!(
                metric_name!("backpressure", "rate_delayed_total"),
                labels.to_vec()
            ),
            rejected: metrics::counter!(
                metric_name!("backpressure", "rejected_total"),
                labels.with(labels::REASON, Reason::RateLimited.as_str())
            ),
            rate: metrics::gauge!(
                metric_name!("backpressure", "rate_per_second"),
                labels.to_vec()
            ),
        };
        metrics.rate.set(per_second(interval));
        Self {
            name: name.to_owned(),
            gcra: Gcra::new(interval, burst),
            admission,
            admitted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            metrics,
        }
    }

    /// Starts a call under the admission. [`Admission::Backpressure`]
    /// reserves a slot however far ahead: `poll_ready` has already waited
    /// for a token, so only a call that lost a race for it (or a keyed
    /// call, whose key `poll_ready` cannot know) waits here.
    pub(crate) fn start(self: &Arc<Self>) -> Start {
        let max_wait = match self.admission {
            Admission::Backpressure => Some(Duration::MAX),
            Admission::FailFast => None,
            Admission::Wait(max) => Some(max),
        };
        match self.gcra.acquire(max_wait) {
            Verdict::Now => {
                self.admit();
                Start::Now
            }
            Verdict::After(wait) => {
                self.metrics.delayed.increment(1);
                Start::After(
                    wait,
                    Reservation {
                        shared: Some(self.clone()),
                    },
                )
            }
            Verdict::Refused(retry_after) => {
                self.rejected.fetch_add(1, Relaxed);
                self.metrics.rejected.increment(1);
                tracing::debug!(
                    name = %self.name,
                    ?retry_after,
                    reason = Reason::RateLimited.as_str(),
                    "rate limited, call rejected"
                );
                Start::Refused(Overloaded::new(Reason::RateLimited, Some(retry_after)))
            }
        }
    }

    fn admit(&self) {
        self.admitted.fetch_add(1, Relaxed);
        self.metrics.admitted.increment(1);
    }

    pub(crate) fn admission(&self) -> Admission {
        self.admission
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn admitted(&self) -> u64 {
        self.admitted.load(Relaxed)
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Relaxed)
    }

    pub(crate) fn set_interval(&self, interval: Duration) {
        self.gcra.set_interval(interval);
        self.metrics.rate.set(per_second(interval));
    }
}

fn per_second(interval: Duration) -> f64 {
    1.0 / interval.as_secs_f64()
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.name)
            .field("interval", &self.gcra.interval())
            .field("burst", &self.gcra.burst())
            .field("admission", &self.admission)
            .finish()
    }
}

// === impl Reservation ===

/// A token reserved for a waiting call. Dropping it before
/// [`use_it`](Self::use_it) gives the token back.
pub(crate) struct Reservation {
    shared: Option<Arc<Shared>>,
}

impl Reservation {
    /// The slot has come and the call goes ahead.
    pub(crate) fn use_it(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.admit();
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.gcra.refund();
        }
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("pending", &self.shared.is_some())
            .finish()
    }
}

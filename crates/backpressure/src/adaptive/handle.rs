//! [`Handle`]: an adaptive limiter's current limit and counters.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::adaptive::shared::Shared;

/// A cloneable handle on one adaptive limiter, from
/// [`AdaptiveLimitLayer::handle`](crate::AdaptiveLimitLayer::handle),
/// [`AdaptiveLimit::handle`](crate::AdaptiveLimit::handle) or a
/// [`KeyedAdaptiveLimitHandle`](crate::KeyedAdaptiveLimitHandle).
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The instance name given to the builder (may be empty).
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// The current limit on calls in flight.
    pub fn limit(&self) -> usize {
        self.shared.limit()
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Callers waiting in line for a permit (under
    /// [`Admission::Backpressure`](crate::Admission::Backpressure) or
    /// [`Admission::Wait`](crate::Admission::Wait)).
    pub fn waiting(&self) -> usize {
        self.shared.waiting()
    }

    /// [`Algorithm::Gradient2`](crate::Algorithm::Gradient2)'s long-term
    /// average latency, the base it measures queueing against; `None`
    /// before the first sample and for the other algorithms.
    pub fn long_rtt(&self) -> Option<Duration> {
        self.shared.long_rtt()
    }

    /// Calls rejected with [`Overloaded`](crate::Overloaded) since the
    /// limiter was built.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected()
    }

    /// Samples counted as drops (failed or slower than the latency
    /// threshold) since the limiter was built.
    pub fn drops(&self) -> u64 {
        self.shared.drops()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Handle").field(&self.shared).finish()
    }
}

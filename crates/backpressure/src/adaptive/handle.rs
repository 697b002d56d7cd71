//! [`Handle`]: an adaptive limiter's current limit and counters.

use std::fmt;
use std::sync::Arc;

use crate::adaptive::shared::Shared;

/// A cloneable handle on one adaptive limiter, from
/// [`AdaptiveLimitLayer::handle`](crate::AdaptiveLimitLayer::handle) or
/// [`AdaptiveLimit::handle`](crate::AdaptiveLimit::handle).
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

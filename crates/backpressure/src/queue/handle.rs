//! [`Handle`]: a queue's depth and counters.

use std::fmt;
use std::sync::Arc;

use crate::admission::Admission;
use crate::queue::shared::Shared;

/// A cloneable handle on one queue, from [`Queue::handle`](crate::Queue::handle).
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

    /// The most calls queued at once.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// The admission model.
    pub fn admission(&self) -> Admission {
        self.shared.admission()
    }

    /// Calls queued now, not yet handed to the inner service (with the
    /// slots granted to backpressured callers that have not called yet).
    pub fn depth(&self) -> usize {
        self.shared.depth()
    }

    /// Calls rejected because the queue was full
    /// ([`Reason::QueueFull`](crate::Reason::QueueFull)) since the queue
    /// was built.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected()
    }

    /// The depth above which calls are shed at random, if set (see
    /// [`QueueConfig::shed_depth`](crate::QueueConfig::shed_depth)).
    pub fn shed_depth(&self) -> Option<usize> {
        self.shared.shed_depth()
    }

    /// Calls shed ([`Reason::Shed`](crate::Reason::Shed)) on queueing
    /// delay (CoDel) or on depth (`shed_depth`) since the queue was built.
    pub fn shed(&self) -> u64 {
        self.shared.shed_count()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Handle").field(&self.shared).finish()
    }
}

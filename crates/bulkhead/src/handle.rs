//! [`Handle`]: a bulkhead's counters and live resizing.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;

use crate::config::MAX_PERMITS;
use crate::permit::Shared;

/// A cloneable handle on one bulkhead, from
/// [`BulkheadLayer::handle`](crate::BulkheadLayer::handle),
/// [`Bulkhead::handle`](crate::Bulkhead::handle) or a
/// [`KeyedHandle`](crate::KeyedHandle).
///
/// ```
/// use rampart_bulkhead::BulkheadConfig;
///
/// let layer = BulkheadConfig::default().max_concurrent(4).build().unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.available(), 4);
/// handle.set_max_concurrent(8).unwrap();
/// assert_eq!(handle.snapshot().max_concurrent, 8);
/// ```
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

/// A bulkhead's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The current limit.
    pub max_concurrent: usize,
    /// Calls holding a permit.
    pub in_flight: usize,
    /// Calls queued for a permit.
    pub queued: usize,
    /// Calls rejected with [`BulkheadFull`](crate::BulkheadFull) since the
    /// bulkhead was built.
    pub rejected: u64,
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
    pub fn max_concurrent(&self) -> usize {
        self.shared.limit()
    }

    /// Changes the limit while the bulkhead runs. Growing admits queued
    /// calls at once; shrinking never revokes a permit, it takes effect as
    /// calls in flight complete. Refuses 0 and values above 1,000,000,000
    /// with a [`ConfigError`] for `max_concurrent`.
    pub fn set_max_concurrent(&self, max_concurrent: usize) -> Result<(), ConfigError> {
        validate::non_zero("max_concurrent", max_concurrent as u64)?;
        validate::at_most("max_concurrent", max_concurrent as u64, MAX_PERMITS as u64)?;
        self.shared.set_limit(max_concurrent);
        Ok(())
    }

    /// The longest a call queues for a permit.
    pub fn max_wait(&self) -> Duration {
        self.shared.max_wait()
    }

    /// The most calls queued at once.
    pub fn max_queued(&self) -> usize {
        self.shared.max_queued()
    }

    /// Calls holding a permit now (may exceed the limit for a while after
    /// it shrank).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Calls queued for a permit now.
    pub fn queued(&self) -> usize {
        self.shared.queued()
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.max_concurrent().saturating_sub(self.in_flight())
    }

    /// Calls rejected with [`BulkheadFull`](crate::BulkheadFull) since the
    /// bulkhead was built.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected()
    }

    /// All counters at once.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            max_concurrent: self.max_concurrent(),
            in_flight: self.in_flight(),
            queued: self.queued(),
            rejected: self.rejected(),
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Handle").field(&self.shared).finish()
    }
}

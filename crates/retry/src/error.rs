//! The errors the retry layer adds to its inner service's.

use std::fmt;
use std::time::Duration;

/// One try took longer than the per-try timeout and was cancelled.
///
/// A timed-out try counts as a retryable failure; this error is returned
/// only when no retry follows it (attempts, deadline or budget spent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryTimeout {
    pub(crate) timeout: Duration,
}

impl TryTimeout {
    /// The per-try timeout that elapsed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Display for TryTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retry attempt timed out after {:?}", self.timeout)
    }
}

impl std::error::Error for TryTimeout {}

/// The overall deadline passed while a try was in flight; the try was
/// cancelled.
///
/// When the deadline would pass during a backoff, or while the inner
/// service is not yet ready for a retry, the retry is not made and the
/// last real outcome is returned instead of this error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineExceeded {
    pub(crate) deadline: Duration,
}

impl DeadlineExceeded {
    /// The overall deadline, measured from the call.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retry deadline of {:?} exceeded", self.deadline)
    }
}

impl std::error::Error for DeadlineExceeded {}

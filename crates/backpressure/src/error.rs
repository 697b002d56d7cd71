//! The one error every limiter of this crate adds: [`Overloaded`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rampart_core::BoxError;

/// Why a call was refused with [`Overloaded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A rate limiter had no token for the call (and, when waiting was
    /// allowed, none would come within the bound).
    RateLimited,
    /// A bounded queue was full (and, when waiting was allowed, no slot
    /// came free within the bound).
    QueueFull,
    /// A queue shed the call because of a standing queue: queueing delay
    /// stayed above the target for a whole interval (CoDel).
    Shed,
    /// An adaptive concurrency limiter was at its current limit (and, when
    /// waiting was allowed, no call completed within the bound).
    ConcurrencyLimit,
}

impl Reason {
    /// The reason in `snake_case`, as used for the `reason` metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::RateLimited => "rate_limited",
            Reason::QueueFull => "queue_full",
            Reason::Shed => "shed",
            Reason::ConcurrencyLimit => "concurrency_limit",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Reason::RateLimited => "rate limited",
            Reason::QueueFull => "queue full",
            Reason::Shed => "shed",
            Reason::ConcurrencyLimit => "concurrency limit",
        };
        f.write_str(s)
    }
}

/// A call was refused because a limiter was at capacity.
///
/// The inner service never saw the request, so it is always safe to shed
/// it or to retry it later. [`retry_after`](Self::retry_after) says when a
/// retry could be admitted, when the limiter knows (the mesh answers 429
/// or 503 with `Retry-After` from it).
///
/// The services' error type is [`BoxError`](rampart_core::BoxError); find
/// this one with `err.downcast_ref::<Overloaded>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overloaded {
    retry_after: Option<Duration>,
    reason: Reason,
}

impl Overloaded {
    /// An overload error for `reason`, with an optional retry hint.
    pub fn new(reason: Reason, retry_after: Option<Duration>) -> Self {
        Self {
            retry_after,
            reason,
        }
    }

    /// How long until a retry could be admitted, if the limiter knows.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Why the call was refused.
    pub fn reason(&self) -> Reason {
        self.reason
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "overloaded: {}", self.reason)?;
        if let Some(after) = self.retry_after {
            write!(f, ", retry after {after:?}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Overloaded {}

/// A queue's worker has stopped, so the queue takes no more calls.
///
/// The worker stops when the inner service fails in `poll_ready` (that
/// error is the [`source`](std::error::Error::source), and every call still
/// queued or made later gets this error) or when the runtime it was spawned
/// on shuts down (no source).
#[derive(Debug, Clone)]
pub struct QueueClosed {
    source: Option<Arc<BoxError>>,
}

impl QueueClosed {
    pub(crate) fn new(source: Option<Arc<BoxError>>) -> Self {
        Self { source }
    }
}

impl fmt::Display for QueueClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(e) => write!(f, "queue closed: inner service failed: {e}"),
            None => f.write_str("queue closed: worker stopped"),
        }
    }
}

impl std::error::Error for QueueClosed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| &***e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_downcast() {
        let e = Overloaded::new(Reason::RateLimited, Some(Duration::from_millis(250)));
        assert_eq!(e.to_string(), "overloaded: rate limited, retry after 250ms");
        assert_eq!(
            Overloaded::new(Reason::RateLimited, None).to_string(),
            "overloaded: rate limited"
        );
        assert_eq!(Reason::RateLimited.as_str(), "rate_limited");
        let boxed: BoxError = e.clone().into();
        assert_eq!(boxed.downcast_ref::<Overloaded>(), Some(&e));
        assert_eq!(
            Overloaded::new(Reason::QueueFull, None).to_string(),
            "overloaded: queue full"
        );
    }

    #[test]
    fn queue_closed_keeps_its_source() {
        use std::error::Error as _;
        let inner: BoxError = "boom".into();
        let e = QueueClosed::new(Some(Arc::new(inner)));
        assert_eq!(e.to_string(), "queue closed: inner service failed: boom");
        assert_eq!(e.source().unwrap().to_string(), "boom");
        let e = QueueClosed::new(None);
        assert_eq!(e.to_string(), "queue closed: worker stopped");
        assert!(e.source().is_none());
    }
}

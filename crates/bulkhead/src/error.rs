//! The error this crate adds: [`BulkheadFull`].

use std::fmt;
use std::time::Duration;

/// A call was rejected because the bulkhead had no free permit.
///
/// Either no permit was free and no queue slot was left (then
/// [`waited`](Self::waited) is zero), or the call queued for the configured
/// max wait without a permit coming free. The inner service never saw the
/// request, so it is always safe to retry elsewhere or to shed it.
///
/// The service's error type is [`BoxError`](rampart_core::BoxError); find
/// this one with `err.downcast_ref::<BulkheadFull>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadFull {
    max_concurrent: usize,
    waited: Duration,
}

impl BulkheadFull {
    pub(crate) fn new(max_concurrent: usize, waited: Duration) -> Self {
        Self {
            max_concurrent,
            waited,
        }
    }

    /// The bulkhead's limit when the call was rejected.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// How long the call queued before it was rejected; zero when it was
    /// rejected on arrival.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let calls = if self.max_concurrent == 1 {
            "call"
        } else {
            "calls"
        };
        write!(
            f,
            "bulkhead full: {} {calls} in flight",
            self.max_concurrent
        )?;
        if !self.waited.is_zero() {
            write!(f, ", waited {:?}", self.waited)?;
        }
        Ok(())
    }
}

impl std::error::Error for BulkheadFull {}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::BoxError;

    #[test]
    fn display_and_downcast() {
        let e = BulkheadFull::new(10, Duration::ZERO);
        assert_eq!(e.to_string(), "bulkhead full: 10 calls in flight");
        let e = BulkheadFull::new(1, Duration::from_millis(250));
        assert_eq!(
            e.to_string(),
            "bulkhead full: 1 call in flight, waited 250ms"
        );
        let boxed: BoxError = e.clone().into();
        assert_eq!(boxed.downcast_ref::<BulkheadFull>(), Some(&e));
    }
}

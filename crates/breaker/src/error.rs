//! The breaker's rejection.

use std::fmt;
use std::time::Duration;

use crate::core::State;

/// A call was refused because the breaker is open, forced open, or
/// half-open with all its trial calls taken.
///
/// The service's error type is `BoxError`; downcast to find this one:
///
/// ```
/// # use rampart_breaker::BreakerOpen;
/// # fn handle(err: rampart_core::BoxError) {
/// if let Some(open) = err.downcast_ref::<BreakerOpen>() {
///     println!("retry in {:?}", open.retry_in());
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerOpen {
    pub(crate) state: State,
    pub(crate) retry_in: Option<Duration>,
}

impl BreakerOpen {
    /// The state that refused the call: open, forced open or half-open.
    pub fn state(&self) -> State {
        self.state
    }

    /// How long until the breaker admits a trial call, when known (open
    /// with a deadline). `None` when forced open or half-open and full.
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry_in
    }
}

impl fmt::Display for BreakerOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state, self.retry_in) {
            (State::HalfOpen, _) => {
                f.write_str("circuit breaker is half-open and its trial calls are taken")
            }
            (State::ForcedOpen, _) => f.write_str("circuit breaker is forced open"),
            (_, Some(d)) => write!(f, "circuit breaker is open; next trial call in {d:?}"),
            (_, None) => f.write_str("circuit breaker is open"),
        }
    }
}

impl std::error::Error for BreakerOpen {}

//! [`Admission`]: what a limiter does with a call it cannot admit now.

use std::time::Duration;

use rampart_core::ConfigError;
use serde::Deserialize;

/// What a limiter does with a call it cannot admit at once. Every limiter
/// of this crate takes one.
///
/// In TOML it is written `admission = "backpressure"`,
/// `admission = "fail_fast"` or `admission = { wait = "50ms" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Admission {
    /// `poll_ready` returns `Pending` until capacity returns, and arranges
    /// to be woken (by a timer) exactly then. The caller decides how long
    /// to wait, for example with a timeout above.
    Backpressure,
    /// The call fails at once with [`Overloaded`](crate::Overloaded),
    /// carrying `retry_after` when the limiter knows it.
    FailFast,
    /// The call waits for capacity up to this long, then fails with
    /// [`Overloaded`](crate::Overloaded). Must be longer than zero.
    Wait(#[serde(with = "rampart_core::duration")] Duration),
}

impl Admission {
    /// Refuses a zero [`Admission::Wait`], naming `field`.
    pub(crate) fn validate(&self, field: &'static str) -> Result<(), ConfigError> {
        match self {
            Admission::Wait(max) if max.is_zero() => Err(ConfigError::new(
                field,
                "wait must be longer than zero (use fail_fast to reject at once)",
            )),
            _ => Ok(()),
        }
    }
}

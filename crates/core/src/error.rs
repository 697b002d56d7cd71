//! The error template every Rampart crate follows.
//!
//! A layer that adds no failure of its own keeps its inner service's error
//! type. A layer that does add one (a breaker that rejects, a bulkhead that
//! is full) returns [`BoxError`], and each rejection is a small public type
//! of its own so a caller can tell them apart with
//! [`downcast_ref`](std::error::Error):
//!
//! - a struct (or a small enum) with the facts a caller needs to react (for
//!   example how long until a retry is sensible),
//! - a lowercase [`Display`](std::fmt::Display) message without a trailing
//!   period,
//! - [`std::error::Error::source`] returning the wrapped error, if any,
//! - `Send + Sync + 'static`, so it converts into [`BoxError`] with `?` or
//!   `.into()`.
//!
//! Invalid configuration is refused by a builder's `build()` with a
//! [`ConfigError`] that names the offending field; no constructor panics on
//! user input.

use std::borrow::Cow;
use std::fmt;

/// A type-erased error, as used by tower: `Box<dyn Error + Send + Sync>`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Configuration was refused by a builder's `build()`.
///
/// It names the field at fault and says why, for example
/// `invalid config field "failure_rate_threshold": must be within 0.0..=1.0, got 1.5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    reason: Cow<'static, str>,
}

impl ConfigError {
    /// An error for `field`, explained by `reason`.
    pub fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The name of the configuration field that was refused.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why the value was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config field {:?}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Validation helpers shared by every builder, so that the same mistake
/// gets the same message in every crate.
pub mod validate {
    use super::ConfigError;
    use std::time::Duration;

    /// A ratio must lie within `0.0..=1.0` (and must not be NaN).
    pub fn ratio(field: &'static str, value: f64) -> Result<f64, ConfigError> {
        if (0.0..=1.0).contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(
                field,
                format!("must be within 0.0..=1.0, got {value}"),
            ))
        }
    }

    /// A count must be at least one.
    pub fn non_zero<T: Into<u64> + Copy>(field: &'static str, value: T) -> Result<T, ConfigError> {
        if value.into() == 0 {
            Err(ConfigError::new(field, "must be at least 1, got 0"))
        } else {
            Ok(value)
        }
    }

    /// A duration must be longer than zero.
    pub fn non_zero_duration(
        field: &'static str,
        value: Duration,
    ) -> Result<Duration, ConfigError> {
        if value.is_zero() {
            Err(ConfigError::new(field, "must be longer than zero"))
        } else {
            Ok(value)
        }
    }

    /// A count must not exceed `max`.
    pub fn at_most(field: &'static str, value: u64, max: u64) -> Result<u64, ConfigError> {
        if value > max {
            Err(ConfigError::new(
                field,
                format!("must be at most {max}, got {value}"),
            ))
        } else {
            Ok(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn config_error_names_the_field() {
        let err = validate::ratio("failure_rate_threshold", 1.5).unwrap_err();
        assert_eq!(err.field(), "failure_rate_threshold");
        assert_eq!(
            err.to_string(),
            "invalid config field \"failure_rate_threshold\": must be within 0.0..=1.0, got 1.5"
        );
        assert!(validate::ratio("r", f64::NAN).is_err());
        assert!(validate::ratio("r", 0.0).is_ok());
        assert!(validate::non_zero("n", 0u32).is_err());
        assert!(validate::non_zero_duration("d", Duration::ZERO).is_err());
        assert!(validate::at_most("k", 5, 4).is_err());
        let boxed: BoxError = err.into();
        assert!(boxed.downcast_ref::<ConfigError>().is_some());
    }
}

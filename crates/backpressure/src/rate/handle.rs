//! [`Handle`]: a rate limiter's counters and live rate changes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rampart_core::ConfigError;

use crate::admission::Admission;
use crate::rate::config::interval;
use crate::rate::shared::Shared;

/// A cloneable handle on one rate limiter, from
/// [`RateLimitLayer::handle`](crate::RateLimitLayer::handle),
/// [`RateLimit::handle`](crate::RateLimit::handle) or a
/// [`KeyedRateLimitHandle`](crate::KeyedRateLimitHandle).
///
/// ```
/// use rampart_backpressure::RateLimitConfig;
/// use std::time::Duration;
///
/// let layer = RateLimitConfig::new().rate(10, Duration::from_secs(1)).build().unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.interval(), Duration::from_millis(100));
/// handle.set_rate(20, Duration::from_secs(1)).unwrap();
/// assert_eq!(handle.interval(), Duration::from_millis(50));
/// assert!(handle.set_rate(0, Duration::from_secs(1)).is_err());
/// ```
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

    /// The spacing between calls at the sustained rate (`period / rate`).
    pub fn interval(&self) -> Duration {
        self.shared.gcra.interval()
    }

    /// The burst size.
    pub fn burst(&self) -> u32 {
        self.shared.gcra.burst()
    }

    /// The admission model.
    pub fn admission(&self) -> Admission {
        self.shared.admission()
    }

    /// Changes the rate to `rate` calls per `period`, at once, for every
    /// service sharing the limiter. Calls already admitted or waiting for
    /// a slot keep it. Slowing down re-prices the calls still counted
    /// against the limiter at the new spacing, so it never grants a fresh
    /// burst; speeding up leaves them as they are. Refuses the values
    /// [`RateLimitConfig::rate`] refuses, naming the field.
    ///
    /// [`RateLimitConfig::rate`]: crate::RateLimitConfig::rate
    pub fn set_rate(&self, rate: u32, period: Duration) -> Result<(), ConfigError> {
        self.shared.set_interval(interval(rate, period)?);
        Ok(())
    }

    /// How long until a call would be admitted at once (zero: now).
    pub fn wait_time(&self) -> Duration {
        self.shared.gcra.wait_time()
    }

    /// Calls admitted since the limiter was built (a call that waited
    /// counts when its slot came).
    pub fn admitted(&self) -> u64 {
        self.shared.admitted()
    }

    /// Calls rejected with [`Overloaded`](crate::Overloaded) since the
    /// limiter was built.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Handle").field(&self.shared).finish()
    }
}

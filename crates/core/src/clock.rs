//! Time as layers keep it: nanoseconds in a `u64`, on tokio's clock.
//!
//! Lock-free state stores instants as `u64` nanoseconds since the moment
//! the state was built, read from `tokio::time::Instant` so that every rule
//! can be tested with `tokio::time::pause()` and `advance`.
//!
//! ```
//! use rampart_core::clock::Origin;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let origin = Origin::new();
//! tokio::time::advance(std::time::Duration::from_millis(3)).await;
//! assert_eq!(origin.nanos(), 3_000_000);
//! # }
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// The instant a layer's state counts its time from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    base: Instant,
}

impl Origin {
    /// Starts counting now.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
        }
    }

    /// Nanoseconds since the origin (saturating: 0 before it, `u64::MAX`
    /// after 584 years).
    #[inline]
    pub fn nanos(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.base))
    }
}

impl Default for Origin {
    fn default() -> Self {
        Self::new()
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX`.
#[inline]
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

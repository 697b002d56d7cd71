//! Passive endpoint health: outlier ejection, the panic threshold and slow
//! start, as state machines the balancer drives.
//!
//! None of them reads a clock or spawns a task: every call takes the time
//! (`tokio::time::Instant`) as an argument, so the balancer decides when
//! things happen and tests run on paused time or plain instants.
//! Endpoints are named by their *slot* (see [`strategy`](crate::strategy)).
//!
//! | piece | answers |
//! |---|---|
//! | [`OutlierDetector`] ([`OutlierConfig`]) | is this endpoint ejected? Fed with each answer's [`Outcome`](rampart_core::Outcome), evaluated every interval |
//! | [`PanicThreshold`] | are so few endpoints healthy that the balancer should pick among all of them? |
//! | [`SlowStart`] ([`SlowStartConfig`]) | by what factor to scale the weight of an endpoint that just entered rotation |
//!
//! How a balancer wires them:
//!
//! ```
//! use rampart_balance::health::{OutlierConfig, OutlierDetector, PanicThreshold, SlowStartConfig};
//! use rampart_core::Outcome;
//! use std::time::Duration;
//! use tokio::time::Instant;
//!
//! let t0 = Instant::now();
//! let mut outliers = OutlierDetector::new(
//!     OutlierConfig::new().consecutive_failures(2).max_ejection_percent(50),
//!     "api",
//!     42, // seed
//!     t0,
//! ).unwrap();
//! let panic = PanicThreshold::default();
//! let ramp = SlowStartConfig::new().window(Duration::from_secs(60)).build().unwrap();
//! for slot in 0..2 {
//!     outliers.add(slot, t0).unwrap();
//! }
//!
//! // Answers, classified by rampart-core's `Classify`.
//! outliers.record(1, Outcome::Failure, t0);
//! assert!(outliers.record(1, Outcome::Failure, t0)); // ejected
//!
//! // The routable set: not ejected, or every endpoint in panic.
//! let healthy: Vec<usize> = (0..2).filter(|&s| !outliers.is_ejected(s)).collect();
//! assert_eq!(healthy, [0]);
//! assert!(!panic.in_panic(healthy.len(), 2)); // 1 of 2 is 50 %: not below it
//!
//! // On a timer at `next_evaluation()`: re-admissions start a slow start.
//! let later = t0 + Duration::from_secs(30);
//! let done = outliers.evaluate(later);
//! assert_eq!(done.readmitted, [1]);
//! let since = outliers.health(1).unwrap().in_rotation_since;
//! assert_eq!(ramp.factor(since, later + Duration::from_secs(30)), 0.5);
//! ```
//!
//! Each piece documents its behaviour at the edges (no endpoints, one
//! endpoint, every endpoint failing); the guide is `docs/balance.md`,
//! section "Endpoint health".

mod config;
mod error;
mod interval;
mod outlier;
mod panic;
mod slow_start;

pub use config::{MAX_EJECTION, OutlierConfig};
pub use error::{HealthError, MAX_SLOT};
pub use outlier::{
    EJECTED, EJECTIONS_OVERFLOW_TOTAL, EJECTIONS_TOTAL, EjectReason, Ejection, EndpointHealth,
    Evaluation, OUTLIERS_DETECTED_TOTAL, OutlierDetector,
};
pub use panic::PanicThreshold;
pub use slow_start::{SlowStart, SlowStartConfig};

//! A circuit breaker for Tower services.
//!
//! A breaker stops calling a dependency that is failing or slow, so that
//! callers fail fast instead of queueing behind timeouts, and the
//! dependency gets room to recover. It watches the outcomes of calls in a
//! sliding window; when too many fail or are slow it *opens* and refuses
//! calls for a while, then lets a few *trial* calls through (half-open)
//! and closes again only if they succeed.
//!
//! ```
//! use std::time::Duration;
//! use rampart_breaker::{BreakerConfig, BreakerOpen};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = BreakerConfig::new()
//!     .name("inventory")
//!     .count_window(20)
//!     .minimum_calls(5)
//!     .failure_rate_threshold(0.5)
//!     .slow_calls(Duration::from_secs(2), 0.8)
//!     .open_duration(Duration::from_secs(10))
//!     .build()?;
//! let handle = layer.handle();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|n: u32| async move {
//!         if n % 2 == 0 { Err("upstream failed") } else { Ok(n) }
//!     }));
//!
//! for n in 0..10 {
//!     let _ = svc.clone().oneshot(n).await;
//! }
//! assert!(handle.state().is_open());
//! let err = svc.clone().oneshot(1).await.unwrap_err();
//! assert!(err.downcast_ref::<BreakerOpen>().is_some());
//! # Ok(()) }
//! ```
//!
//! # What it does
//!
//! | rule | setting |
//! |---|---|
//! | count window (last N calls) or time window (last T, in a ring of buckets; O(1) per call, bounded memory) | [`BreakerConfig::count_window`], [`BreakerConfig::time_window`] |
//! | trip on failure rate, on slow-call rate, each after a minimum of calls | [`BreakerConfig::failure_rate_threshold`], [`BreakerConfig::slow_calls`], [`BreakerConfig::minimum_calls`] |
//! | trip on failures in a row | [`BreakerConfig::consecutive_failures`] |
//! | open duration, fixed or growing per consecutive opening, with cap and jitter | [`BreakerConfig::open_duration`], [`BreakerConfig::open_duration_growth`], [`BreakerConfig::open_duration_jitter`] |
//! | at most K trial calls; close on a success ratio, reopen as soon as it cannot be met; a maximum dwell in half-open | [`BreakerConfig::half_open_max_calls`], [`BreakerConfig::half_open_success_ratio`], [`BreakerConfig::half_open_max_duration`] |
//! | fail fast, or backpressure through `poll_ready` | [`BreakerConfig::reject_mode`] |
//! | what counts as a failure | [`BreakerLayer::classifier`] with any [`rampart_core::Classify`] |
//! | an answer instead of the error while open | [`BreakerLayer::fallback`] |
//! | one breaker per key | [`BreakerConfig::build_keyed`] |
//! | state, metrics, subscription, force open / closed / disabled / metrics-only, live thresholds | [`Handle`] |
//!
//! Outcomes of calls that started before a state change are ignored
//! (every transition bumps an epoch the call carries). A call whose future
//! is dropped counts as neither success nor failure, and frees its
//! half-open trial slot; a call whose inner future panics counts as a
//! failure. The hot path (closed, recording an outcome) is lock-free and
//! allocates nothing; transitions take one short lock.
//!
//! # Errors
//!
//! The service's error is `BoxError`:
//!
//! | error | when |
//! |---|---|
//! | [`BreakerOpen`] | the breaker refused the call (open, forced open, or half-open with every trial slot taken); carries the time until the next trial when known |
//! | the inner service's error, boxed | the call was made and failed; downcast to your type |
//! | [`rampart_core::ConfigError`] (from `build`) | a setting was refused; it names the field |
//!
//! # Under overload
//!
//! An open breaker costs a caller one atomic load and a clock read: it is
//! the cheapest answer the stack can give. In half-open, calls beyond the
//! K trials are refused at once. In backpressure mode nothing is refused:
//! `poll_ready` stays `Pending` until a trial is allowed, so put a
//! bounded queue or a timeout in front of it.
//!
//! # Differences from tower-resilience and Resilience4j
//!
//! - The time window is a fixed ring of buckets with running totals, so its
//!   cost per call does not grow with the call rate or the window's age
//!   (see `docs/benchmarks.md`).
//! - The hot path takes no lock; Resilience4j synchronizes its window and
//!   tower-resilience takes a mutex per call.
//! - Outcomes from calls admitted before a transition are dropped (an
//!   epoch tag), so a slow failure from the last open period cannot reopen
//!   a breaker that just closed.
//! - Open durations can grow per consecutive opening with a cap and jitter
//!   (Polly v8 has this; Resilience4j needs a custom interval function).
//! - Failures are judged by [`rampart_core::Classify`], the same decision
//!   retry, balance and the mesh use.
//! - A backpressure mode makes the breaker a readiness gate, as in
//!   linkerd2-proxy, for use behind a balancer.
//!
//! See `docs/breaker.md` for the state diagram.

mod config;
#[cfg(rampart_loom)]
#[doc(hidden)]
pub mod core;
#[cfg(not(rampart_loom))]
#[allow(unreachable_pub)]
mod core;
mod error;
mod fallback;
mod future;
mod handle;
mod keyed;
mod layer;
mod service;
mod shared;
mod sync;
#[cfg(rampart_loom)]
#[doc(hidden)]
pub mod window;
#[cfg(not(rampart_loom))]
#[allow(unreachable_pub)]
mod window;

pub use crate::config::{BreakerConfig, RejectMode, WindowConfig};
pub use crate::core::State;
pub use crate::error::BreakerOpen;
pub use crate::fallback::{Fallback, FallbackFn, NoFallback};
pub use crate::future::ResponseFuture;
pub use crate::handle::{Handle, MetricsSnapshot};
pub use crate::keyed::{KeyedBreaker, KeyedBreakerLayer, KeyedHandle};
pub use crate::layer::BreakerLayer;
pub use crate::service::Breaker;

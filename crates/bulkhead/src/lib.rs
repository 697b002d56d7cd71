//! Bulkhead for Tower services: bounded concurrency with a bounded wait,
//! per key, released on drop.
//!
//! ```
//! use rampart_bulkhead::{BulkheadConfig, BulkheadFull};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rampart_core::BoxError> {
//! let bulkhead = BulkheadConfig::default()
//!     .name("payments")
//!     .max_concurrent(10)                  // at most 10 calls in flight
//!     .max_wait(Duration::from_millis(50)) // then queue up to 50 ms ...
//!     .max_queued(20)                      // ... at most 20 calls
//!     .build()?;
//! let handle = bulkhead.handle();
//!
//! let service = ServiceBuilder::new()
//!     .layer(bulkhead)
//!     .service(service_fn(|name: String| async move {
//!         Ok::<_, std::io::Error>(format!("hello, {name}"))
//!     }));
//!
//! match service.oneshot("ada".to_string()).await {
//!     Ok(greeting) => assert_eq!(greeting, "hello, ada"),
//!     Err(e) if e.is::<BulkheadFull>() => { /* shed: answer 503, try elsewhere */ }
//!     Err(e) => return Err(e),
//! }
//! assert_eq!(handle.in_flight(), 0);
//! assert_eq!(handle.rejected(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! # What it protects against
//!
//! A dependency that slows down makes its callers hold more calls in
//! flight (Little's law: in flight = rate × latency). Without a bound those
//! calls pile up, each holding a connection, memory and a task, until the
//! caller itself falls over, and with it everything else it serves. A
//! bulkhead bounds the calls in flight to one dependency, so that its
//! slowness costs at most `max_concurrent` calls' worth of resources and
//! the caller stays healthy for everything else. With
//! [`build_keyed`](BulkheadConfig::build_keyed) each upstream, route or
//! tenant gets its own bulkhead, so one slow or noisy key cannot take the
//! permits of the others.
//!
//! # Behaviour under overload
//!
//! - A call takes a permit **when it starts** (in `call`), not in
//!   `poll_ready`: `poll_ready` only forwards the inner service's readiness,
//!   so idle clients hold nothing and a full bulkhead never leaves a caller
//!   waiting on readiness.
//! - With a permit free the call goes straight to the inner service (one
//!   CAS; no lock, no allocation).
//! - Otherwise, if `max_wait` is zero (the default) or `max_queued` calls
//!   are queued already, the call fails at once with [`BulkheadFull`].
//! - Otherwise it queues, first come first served, for at most `max_wait`;
//!   newcomers do not overtake queued calls. If no permit comes in time it
//!   fails with [`BulkheadFull`] whose [`waited`](BulkheadFull::waited) says
//!   how long.
//! - The permit is released when the response future completes, fails, or
//!   is dropped (a cancelled call, a timeout above, a panicking inner
//!   future), or, with
//!   [`hold_until_body_end`](BulkheadLayer::hold_until_body_end), when the
//!   HTTP response body ends. A queued call that is dropped leaves the
//!   queue, and passes on a permit it was granted meanwhile.
//! - The limit can change at run time through a [`Handle`]: growing admits
//!   queued calls at once; shrinking never revokes a permit and takes effect
//!   as calls complete.
//!
//! # Errors
//!
//! The services' error type is [`BoxError`](rampart_core::BoxError).
//!
//! | error | when | what to do |
//! |---|---|---|
//! | [`BulkheadFull`] | no permit free and no queue slot, or the max wait passed | the inner service never saw the request: shed it (HTTP 503 at the edge) or retry elsewhere |
//! | the inner service's error, boxed unchanged | the inner service failed | downcast to its own type |
//!
//! Invalid limits are refused by [`BulkheadConfig::build`] with a
//! [`ConfigError`](rampart_core::ConfigError) naming the field.
//!
//! # Observability
//!
//! Metrics go through the `metrics` facade, with handles registered once
//! when a bulkhead (or a key's bulkhead) is built, labelled `name` (and
//! `key`):
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `rampart_bulkhead_in_flight` | gauge | calls holding a permit |
//! | `rampart_bulkhead_queued` | gauge | calls queued for a permit |
//! | `rampart_bulkhead_max_concurrent` | gauge | the current limit |
//! | `rampart_bulkhead_admitted_total` | counter | calls admitted |
//! | `rampart_bulkhead_rejected_total` | counter | calls rejected, `reason` = `full` (no permit, no queue slot) or `max_wait` |
//! | `rampart_bulkhead_wait_seconds` | histogram | time queued, for every call that queued (admitted or not) |
//!
//! Each rejection also emits a `tracing` debug event with the fields
//! `name`, `max_concurrent`, `in_flight`, `queued`, `waited` and `reason`.
//!
//! # Differences from tower's `ConcurrencyLimit`
//!
//! - **Readiness.** `ConcurrencyLimit` acquires its permit in `poll_ready`
//!   and keeps it until the call, so a client that polls ready and then
//!   idles holds a permit, and a full limit parks callers in `poll_ready`
//!   with no bound on the wait. A bulkhead takes the permit in `call`, bounds
//!   the wait by time and queue length, and fails with a typed error
//!   instead. (Hence the inner service must be `Clone`: a waiting call takes
//!   the readied service along.)
//! - **Sharing.** Every service made by one [`BulkheadLayer`] shares its
//!   permits (like `GlobalConcurrencyLimitLayer`), which is what
//!   `Router::layer` needs; `ConcurrencyLimitLayer` gives each service its
//!   own.
//! - **Beyond the response.** With
//!   [`hold_until_body_end`](BulkheadLayer::hold_until_body_end) the permit
//!   is held while an HTTP body streams.
//! - **Run time.** Per-key instances, live resizing, counters through a
//!   [`Handle`], metrics and tracing.
//!
//! # Runtime
//!
//! A call that has to wait uses `tokio::time::sleep`, so it needs a Tokio
//! runtime with the time driver; a call that finds a permit free or is
//! rejected at once does not.

mod body;
mod config;
#[cfg(rampart_loom)]
#[doc(hidden)]
pub mod core;
#[cfg(not(rampart_loom))]
mod core;
mod error;
pub mod future;
mod handle;
mod keyed;
mod layer;
mod permit;
mod policy;
mod service;
mod sync;

pub use body::{PermitBody, ReleaseOnBodyEnd};
pub use config::{BulkheadConfig, MAX_PERMITS};
pub use error::BulkheadFull;
pub use handle::{Handle, Snapshot};
pub use keyed::{KeyedBulkhead, KeyedBulkheadLayer, KeyedHandle};
pub use layer::BulkheadLayer;
pub use permit::Permit;
pub use policy::{ReleaseOnResponse, ReleasePolicy};
pub use service::Bulkhead;

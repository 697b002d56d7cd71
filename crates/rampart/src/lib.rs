//! Rampart: Tower middleware for the patterns that keep distributed
//! services alive.
//!
//! This crate re-exports every Rampart crate behind a feature of the same
//! name (`full` enables all), so an application depends on one crate:
//!
//! ```toml
//! rampart = { version = "0.1", features = ["breaker", "bulkhead"] }
//! ```
//!
//! | feature | crate | pattern |
//! |---|---|---|
//! | (always) | [`core`] | errors, outcome classification, keyed instances, metric names |
//! | `breaker` | `rampart-breaker` | circuit breaker |
//! | `bulkhead` | `rampart-bulkhead` | bounded concurrency with a bounded wait |
//! | `retry` | `rampart-retry` | retries with backoff and jitter, `Retry-After`, per-try timeouts, deadlines (propagated), retry budgets, hedged requests, replay of streaming HTTP bodies |
//! | `backpressure` | `rampart-backpressure` | bounded queue (global or per key) with CoDel and early shedding, GCRA rate limiting (global and per key), adaptive concurrency limit (AIMD, Vegas, Gradient2) |
//! | `discovery` | `rampart-discovery` | service registry (memory) with leases, self-preservation and a `tower::discover` adapter; config center (memory, file) with versions, watches, typed values, gray release |
//! | `balance` | `rampart-balance` | a balancer following a `Discover` stream: round robin, smooth weighted round robin, weighted random, least request, p2c on pending or peak-EWMA, ring hash and Maglev (with bounded load); outlier ejection, panic threshold, slow start; `Retry-After` back-off |
//! | `transaction` | `rampart-transaction` | saga coordinator on a durable log (SQLite, PostgreSQL) that survives crashes, participant barrier, HTTP participants, crash-injection harness (TCC, 2PC, 3PC to come) |
//! | `cache` | `rampart-cache` | local tier on moka, Redis tier with near-cache invalidation, single-flight loads, stale-while-revalidate, bloom filter and negative cache, HTTP adapter |
//!
//! A stack: a bulkhead bounds how many calls wait on a dependency, and a
//! breaker inside it stops calling the dependency while it fails.
//!
#![cfg_attr(all(feature = "breaker", feature = "bulkhead"), doc = "```")]
#![cfg_attr(not(all(feature = "breaker", feature = "bulkhead")), doc = "```ignore")]
//! use std::time::Duration;
//! use rampart::breaker::BreakerConfig;
//! use rampart::bulkhead::BulkheadConfig;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rampart::core::BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(BulkheadConfig::new().max_concurrent(32).build()?)
//!     .layer(BreakerConfig::new().open_duration(Duration::from_secs(5)).build()?)
//!     .service(service_fn(|name: &'static str| async move {
//!         Ok::<_, rampart::core::BoxError>(format!("hello, {name}"))
//!     }));
//! assert_eq!(svc.oneshot("rampart").await?, "hello, rampart");
//! # Ok(()) }
//! ```

pub use rampart_core as core;

#[cfg(feature = "breaker")]
pub use rampart_breaker as breaker;

#[cfg(feature = "bulkhead")]
pub use rampart_bulkhead as bulkhead;

#[cfg(feature = "retry")]
pub use rampart_retry as retry;

#[cfg(feature = "backpressure")]
pub use rampart_backpressure as backpressure;

#[cfg(feature = "cache")]
pub use rampart_cache as cache;

#[cfg(feature = "balance")]
pub use rampart_balance as balance;
#[cfg(feature = "discovery")]
pub use rampart_discovery as discovery;
#[cfg(feature = "transaction")]
pub use rampart_transaction as transaction;

/// The README's examples, compiled and run as doctests so the README
/// cannot drift from the code.
#[cfg(all(doctest, feature = "breaker", feature = "bulkhead"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

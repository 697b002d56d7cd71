//! Shared contracts for Rampart's middleware crates.
//!
//! Every pattern crate builds on the same four pieces, so that a decision
//! means the same thing in every layer:
//!
//! - [`error`]: [`BoxError`], the error template (small typed, downcastable
//!   errors with lowercase messages) and [`ConfigError`], which every
//!   builder's `build()` returns for a refused field.
//! - [`classify`]: one [`classify::Decision`] per call outcome
//!   (success / failure / ignored, and whether and when it may be retried),
//!   with impls for `Result<T, E>` and HTTP responses.
//! - [`keyed`]: a bounded map from a request-derived key to a layer
//!   instance.
//! - [`clock`]: instants as `u64` nanoseconds on tokio's clock.
//! - [`duration`]: durations in config files (`"250ms"`, `"10s"`).
//! - [`metrics`]: the `rampart_<crate>_<what>` naming scheme and shared
//!   label names.
//!
//! ```
//! use rampart_core::classify::{Classify, HttpClassifier};
//!
//! let ok: Result<http::Response<()>, rampart_core::BoxError> =
//!     Ok(http::Response::builder().status(404).body(()).unwrap());
//! // A 404 is the server answering correctly: not a failure.
//! assert!(HttpClassifier::default().classify(&ok).is_success());
//! ```

pub mod classify;
pub mod clock;
pub mod duration;
pub mod error;
pub mod keyed;
pub mod metrics;
pub mod random;
#[cfg(feature = "test-util")]
pub mod testing;

pub use classify::{Classify, Decision, Outcome, RetryHint};
pub use error::{BoxError, ConfigError};

/// A boxed, `Send` future: what the methods of Rampart's object-safe
/// backend traits return (the remote cache, the registry, the config
/// store, the transaction log), so each works as `Arc<dyn Trait>`.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

//! Load balancing for Tower services over a changing set of endpoints.
//!
//! [`Balance`] follows a [`tower::discover::Discover`] stream (a
//! `rampart-discovery` registry, a static [`ServiceList`], or your own),
//! picks an endpoint per request with a [`strategy`], and takes
//! misbehaving endpoints out of rotation ([`health`]: outlier ejection,
//! panic threshold, slow start; plus `Retry-After` back-off).
//!
//! ```
//! use std::time::Duration;
//! use rampart_balance::health::OutlierConfig;
//! use rampart_balance::strategy::SmoothWeightedRoundRobin;
//! use rampart_balance::{Balance, BalanceConfig, Weighted};
//! use tower::discover::ServiceList;
//! use tower::{service_fn, BoxError, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let endpoint = |name: &'static str, weight| {
//!     Weighted::new(service_fn(move |_req: ()| async move { Ok::<_, BoxError>(name) }), weight)
//! };
//! // keys 0 and 1; `a` weighs twice as much as `b`
//! let endpoints = ServiceList::new(vec![endpoint("a", 2), endpoint("b", 1)]);
//! let config = BalanceConfig::new()
//!     .name("orders")
//!     .max_wait(Duration::from_millis(100))
//!     .outlier(OutlierConfig::default().consecutive_failures(5));
//! let mut balance = Balance::with_config(endpoints, SmoothWeightedRoundRobin::new(), config)?
//!     .weight_by(Weighted::weight);
//!
//! let mut answers = Vec::new();
//! for _ in 0..3 {
//!     answers.push(balance.ready().await?.call(()).await?);
//! }
//! assert_eq!(answers, ["a", "b", "a"]); // smooth: no burst to the heavier one
//! assert_eq!(balance.handle().endpoints().len(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! | part | items |
//! |---|---|
//! | the balancer | [`Balance`], [`BalanceConfig`], [`BalanceHandle`], [`Weighted`] |
//! | strategies | [`strategy::RoundRobin`], [`strategy::SmoothWeightedRoundRobin`], [`strategy::WeightedRandom`], [`strategy::LeastRequest`], [`strategy::PowerOfTwoChoices`] (pending or peak EWMA), [`strategy::RingHash`], [`strategy::Maglev`] (both with bounded load), [`strategy::StrategyConfig`] |
//! | endpoint health | [`health::OutlierDetector`], [`health::PanicThreshold`], [`health::SlowStart`] |
//! | errors | [`NoEndpoints`], [`NoReadyEndpoint`], [`DiscoverError`] (see [`error`]) |
//!
//! The guide, with the behaviour under overload and every setting, is
//! `docs/balance.md`.
//!
//! [`ServiceList`]: tower::discover::ServiceList

mod balance;
mod config;
pub mod error;
mod ewma;
mod handle;
pub mod health;
pub mod strategy;
mod weighted;

pub use balance::{Balance, ResponseFuture};
pub use config::BalanceConfig;
pub use error::{DiscoverError, NoEndpoints, NoReadyEndpoint};
pub use handle::{BalanceHandle, EndpointStatus};
pub use weighted::Weighted;

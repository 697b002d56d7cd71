//! Load balancing for Tower services over a changing set of endpoints.
//!
//! Work in progress (issue 6).

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

//! Hedged requests: a call still unanswered after a delay is sent once
//! more, the first good answer wins and the other attempt is cancelled.
//!
//! See [`HedgeLayer`](crate::HedgeLayer) and the crate docs.

mod config;
mod future;
mod histogram;
mod layer;
mod service;

pub use self::config::{HedgeConfig, HedgeDelay, MAX_HEDGES};
pub use self::future::HedgeFuture;
pub use self::layer::HedgeLayer;
pub use self::service::Hedge;

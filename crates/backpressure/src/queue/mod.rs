//! A bounded queue in front of a service, drained by a worker task.

pub(crate) mod codel;
pub(crate) mod config;
pub mod future;
pub(crate) mod handle;
pub(crate) mod layer;
pub(crate) mod service;
pub(crate) mod shared;
mod worker;

//! A bounded queue in front of a service, drained by a worker task.

pub(crate) mod codel;
pub(crate) mod config;
pub mod future;
pub(crate) mod handle;
pub(crate) mod keyed;
pub(crate) mod layer;
pub(crate) mod service;
pub(crate) mod shared;
#[cfg(rampart_loom)]
#[doc(hidden)]
pub mod slots;
#[cfg(not(rampart_loom))]
pub(crate) mod slots;
mod worker;

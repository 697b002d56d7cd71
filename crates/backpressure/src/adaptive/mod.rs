//! An adaptive concurrency limit (AIMD, Vegas or Gradient2), global or per
//! key, with callers waiting for a permit served in arrival order.

pub(crate) mod config;
#[cfg(rampart_loom)]
#[doc(hidden)]
pub mod core;
#[cfg(not(rampart_loom))]
pub(crate) mod core;
pub mod future;
pub(crate) mod gradient;
pub(crate) mod handle;
pub(crate) mod keyed;
pub(crate) mod service;
pub(crate) mod shared;

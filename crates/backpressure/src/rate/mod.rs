//! GCRA rate limiting, global and per key.

pub(crate) mod config;
pub mod future;
#[cfg(rampart_loom)]
#[doc(hidden)]
pub mod gcra;
#[cfg(not(rampart_loom))]
pub(crate) mod gcra;
pub(crate) mod handle;
pub(crate) mod keyed;
pub(crate) mod layer;
pub(crate) mod service;
pub(crate) mod shared;

//! An adaptive concurrency limit (AIMD or Vegas).

pub(crate) mod config;
pub mod future;
pub(crate) mod handle;
pub(crate) mod service;
pub(crate) mod shared;

//! Atomics and locks for the limiters' lock-free cores: loom's under
//! `--cfg rampart_loom`, std's otherwise, so each core can be model-checked
//! alone (`tests/loom.rs`).

#[cfg(rampart_loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::Mutex;
#[cfg(rampart_loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(not(rampart_loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::Mutex;
#[cfg(not(rampart_loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

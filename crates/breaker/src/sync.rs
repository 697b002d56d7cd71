//! Atomics and locks for the state machine: loom's under `--cfg rampart_loom`,
//! std's otherwise, so the core can be model-checked alone.

#[cfg(rampart_loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(rampart_loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

#[cfg(not(rampart_loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(rampart_loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

/// Locks `m`, recovering the data if a panicking thread poisoned it: the
/// state it guards is always left consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

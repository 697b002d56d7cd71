//! The synchronisation primitives of the permit core: loom's under
//! `--cfg rampart_loom` (so the loom tests can model-check every
//! interleaving), std's otherwise.

#[cfg(rampart_loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard, atomic::*};
#[cfg(not(rampart_loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard, atomic::*};

/// Locks `mutex`, ignoring poisoning: the core's critical sections call no
/// user code (only `Waker::clone` and drop) and leave the data consistent
/// at every step, so a poisoned lock still guards valid data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

//! Helpers shared by the transaction tests.
#![allow(dead_code, unreachable_pub)]

pub mod crash_suite;

use std::sync::atomic::{AtomicU32, Ordering};

/// A name no other test (or concurrent run) uses: `test_pid_n_nanos`.
pub(crate) fn unique(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{test}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

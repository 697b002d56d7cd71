//! Shared by the integration tests.

/// A current-thread runtime with tokio's clock paused, for tests that
/// must install a recorder or subscriber before the runtime runs.
pub(crate) fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

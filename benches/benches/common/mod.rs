//! What every bench target measures with: the wall clock, a
//! current-thread runtime, criterion's settings, per-call timing and
//! progress notes. Included by each target as `mod common;`.

#![allow(dead_code, reason = "each bench target uses a part of it")]

use std::future::Future;
use std::time::Duration;

use criterion::Criterion;
use tokio::runtime::Runtime;

/// Reads the wall clock. A benchmark measures real time; the workspace ban
/// on `std::time::Instant` exists so that library code works under tokio's
/// paused clock, which no benchmark uses.
#[allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "benchmarks measure wall time"
)]
pub(crate) fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// A current-thread runtime, as every benchmark uses.
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// Every group's settings: modest, so that the whole run stays short on a
/// small machine.
pub(crate) fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

/// Prints a note of the bench's own (setup, skip) to stderr.
#[allow(clippy::print_stderr, reason = "the bench's own progress note")]
pub(crate) fn note(message: &str) {
    eprintln!("{message}");
}

/// Sums the time of each of `iters` calls alone, running `between` (not
/// timed) after each one.
pub(crate) async fn timed_calls<F: Future<Output = ()>>(
    iters: u64,
    mut call: impl AsyncFnMut(),
    mut between: impl FnMut() -> F,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = now();
        call().await;
        total += start.elapsed();
        between().await;
    }
    total
}

/// The time `iters` calls take back to back (one clock reading at each
/// end), for calls too short to time one by one.
pub(crate) async fn looped(iters: u64, mut call: impl AsyncFnMut()) -> Duration {
    let start = now();
    for _ in 0..iters {
        call().await;
    }
    start.elapsed()
}

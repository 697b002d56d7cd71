//! Model checks of the limiters' lock-free cores.
//!
//! Run with `RUSTFLAGS="--cfg rampart_loom" cargo test --release --test loom`
//! (scripts/test.sh does, with a small preemption bound).
#![cfg(rampart_loom)]

#[path = "loom/rate.rs"]
mod rate;

#[path = "loom/adaptive.rs"]
mod adaptive;

//! Benches of the Rampart layers side by side with their peers (see
//! `benches/layers.rs`, and `benches/cache.rs` for the cache), an
//! allocation check (`tests/no_alloc.rs`), and `bench-report`, which turns
//! criterion's estimates into the tables of `docs/benchmarks.md`.

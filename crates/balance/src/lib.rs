//! Load balancing for Tower services over a changing set of endpoints.
//!
//! Work in progress (issue 6). Built: the [`strategy`] module — the
//! `Strategy` interface and every strategy (round robin, smooth weighted
//! round robin, weighted random, least request, power of two choices on
//! pending or peak EWMA, ring hash and Maglev with bounded load), chosen
//! from configuration with [`strategy::StrategyConfig`]. Guide:
//! `docs/balance.md`. Not built yet: the balancer service, passive health
//! (outlier ejection, panic threshold) and slow start.

pub mod strategy;

//! Load balancing for Tower services over a changing set of endpoints.
//!
//! Work in progress (issue 6): the [`strategy`] interface.

pub mod strategy;

//! Load balancing for Tower services over a changing set of endpoints.
//!
//! Work in progress (issue 6): the [`strategy`] interface and the
//! [`health`] state machines (outlier ejection, panic threshold, slow
//! start).

pub mod health;
pub mod strategy;

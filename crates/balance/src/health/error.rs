//! The errors of the health state machines.

use std::fmt;

/// The largest slot index an [`OutlierDetector`](super::OutlierDetector)
/// takes (slots are table indices, dense from 0; this bounds the memory a
/// wrong index could claim).
pub const MAX_SLOT: usize = (1 << 20) - 1;

/// A slot the detector refused in [`add`](super::OutlierDetector::add).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthError {
    /// The slot already holds an endpoint; remove it first.
    SlotTaken {
        /// The slot.
        slot: usize,
    },
    /// The slot is above [`MAX_SLOT`].
    SlotOutOfRange {
        /// The slot.
        slot: usize,
    },
}

impl fmt::Display for HealthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthError::SlotTaken { slot } => write!(f, "slot {slot} already holds an endpoint"),
            HealthError::SlotOutOfRange { slot } => {
                write!(f, "slot {slot} is above the largest slot {MAX_SLOT}")
            }
        }
    }
}

impl std::error::Error for HealthError {}

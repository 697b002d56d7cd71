//! CoDel-style shedding on queueing delay.
//!
//! The worker measures each call's sojourn time (from entering the queue to
//! reaching the inner service) and keeps the minimum over a window of
//! `interval`. A minimum above `target` means the queue never drained
//! below the target during a whole interval: a standing queue, which only
//! adds latency. For the next window the queue is then *shedding*: every
//! call that waited longer than `target` is refused with
//! [`Reason::Shed`](crate::Reason::Shed) instead of being called. An empty
//! queue counts as a zero sojourn, so a queue that drains stops shedding
//! after one window.

use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;
use serde::Deserialize;
use tokio::time::Instant;

/// CoDel parameters for a [`QueueConfig`](crate::QueueConfig): see
/// [`QueueConfig::codel`](crate::QueueConfig::codel).
///
/// In TOML: `codel = { target = "5ms", interval = "100ms" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Codel {
    /// The acceptable queueing delay.
    #[serde(with = "rampart_core::duration")]
    pub target: Duration,
    /// The window over which the minimum delay must exceed `target` before
    /// shedding starts.
    #[serde(with = "rampart_core::duration")]
    pub interval: Duration,
}

impl Codel {
    /// Refuses a zero target or interval, or a target not below the
    /// interval.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero_duration("codel.target", self.target)?;
        validate::non_zero_duration("codel.interval", self.interval)?;
        if self.target >= self.interval {
            return Err(ConfigError::new(
                "codel.target",
                format!(
                    "must be shorter than codel.interval ({:?}), got {:?}",
                    self.interval, self.target
                ),
            ));
        }
        Ok(())
    }
}

/// The worker's CoDel state; the worker is its only user, so no atomics.
#[derive(Debug)]
pub(crate) struct CodelState {
    params: Codel,
    window_end: Option<Instant>,
    min: Duration,
    shedding: bool,
}

impl CodelState {
    pub(crate) fn new(params: Codel) -> Self {
        Self {
            params,
            window_end: None,
            min: Duration::MAX,
            shedding: false,
        }
    }

    /// Records a call that waited `sojourn`; `true` when it is to be shed.
    pub(crate) fn on_dequeue(&mut self, now: Instant, sojourn: Duration) -> bool {
        match self.window_end {
            Some(end) if now < end => self.min = self.min.min(sojourn),
            Some(_) => {
                self.shedding = self.min > self.params.target;
                self.window_end = Some(now + self.params.interval);
                self.min = sojourn;
            }
            None => {
                self.window_end = Some(now + self.params.interval);
                self.min = sojourn;
            }
        }
        self.shedding && sojourn > self.params.target
    }

    /// The queue is empty: no standing queue in this window.
    pub(crate) fn on_empty(&mut self) {
        self.min = Duration::ZERO;
    }
}

//! [`QueueConfig`]: the bounds of one queue, its builder and its
//! validation.

use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;
use serde::Deserialize;

use crate::admission::Admission;
use crate::queue::codel::Codel;
use crate::queue::layer::QueueLayer;

/// The largest queue capacity accepted.
pub const MAX_CAPACITY: usize = 1_000_000_000;

/// The capacity and admission of a bounded queue.
///
/// Build one with the consuming setters (each says what it defaults to),
/// then call [`build`](Self::build) for a [`QueueLayer`], which refuses bad
/// values with a [`ConfigError`] naming the field.
///
/// It also deserializes (for the mesh's TOML), with every field optional,
/// durations as `"5ms"` or `"1s"` and unknown keys refused:
///
/// ```
/// use rampart_backpressure::{Admission, QueueConfig};
/// use std::time::Duration;
///
/// let config: QueueConfig = toml::from_str(r#"
///     name = "ingest"
///     capacity = 64
///     admission = "backpressure"
///     codel = { target = "5ms", interval = "100ms" }
/// "#).unwrap();
/// assert_eq!(config, QueueConfig::new()
///     .name("ingest")
///     .capacity(64)
///     .admission(Admission::Backpressure)
///     .codel(Duration::from_millis(5), Duration::from_millis(100)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    name: String,
    capacity: usize,
    admission: Admission,
    codel: Option<Codel>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            capacity: 1024,
            admission: Admission::FailFast,
            codel: None,
        }
    }
}

impl QueueConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The instance name, put on every metric as the `name` label and on
    /// every tracing event. Defaults to `""` (no label).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The most calls queued at once, waiting for the inner service. Must
    /// be 1 to [`MAX_CAPACITY`]. Defaults to 1024.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// What happens to a call when the queue is full: see [`Admission`].
    /// Defaults to [`Admission::FailFast`], so that excess load is shed at
    /// once instead of piling up in front of the queue.
    pub fn admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }

    /// Sheds calls on queueing delay, CoDel-style: when the shortest time
    /// a call spent queued over a whole `interval` was above `target` (a
    /// standing queue), calls that waited longer than `target` are refused
    /// with [`Reason::Shed`](crate::Reason::Shed) for the next interval
    /// instead of reaching the inner service, until the queue drains. Good
    /// starting values: 5 ms and 100 ms. `target` must be longer than zero
    /// and shorter than `interval`. Defaults to off.
    pub fn codel(mut self, target: Duration, interval: Duration) -> Self {
        self.codel = Some(Codel { target, interval });
        self
    }

    /// Checks the values, naming the first field at fault: `capacity` is 0
    /// or above [`MAX_CAPACITY`], `admission` waits zero, `codel.target` or
    /// `codel.interval` is zero, or the target is not below the interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero("capacity", self.capacity as u64)?;
        validate::at_most("capacity", self.capacity as u64, MAX_CAPACITY as u64)?;
        self.admission.validate("admission")?;
        match &self.codel {
            Some(codel) => codel.validate(),
            None => Ok(()),
        }
    }

    /// Validates the values and builds the layer. Metric handles are
    /// registered when the layer makes a queue.
    pub fn build<Req>(self) -> Result<QueueLayer<Req>, ConfigError> {
        self.validate()?;
        Ok(QueueLayer::new(self))
    }

    pub(crate) fn name_ref(&self) -> &str {
        &self.name
    }

    pub(crate) fn capacity_value(&self) -> usize {
        self.capacity
    }

    pub(crate) fn admission_value(&self) -> Admission {
        self.admission
    }

    pub(crate) fn codel_value(&self) -> Option<Codel> {
        self.codel
    }
}

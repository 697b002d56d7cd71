//! [`QueueConfig`]: the bounds of one queue, its builder and its
//! validation.

use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;
use rampart_core::keyed::KeyedConfig;
use serde::Deserialize;

use crate::admission::Admission;
use crate::queue::codel::Codel;
use crate::queue::keyed::KeyedQueueLayer;
use crate::queue::layer::QueueLayer;

/// The largest queue capacity accepted.
pub const MAX_CAPACITY: usize = 1_000_000_000;

/// The capacity and admission of a bounded queue.
///
/// Build one with the consuming setters (each says what it defaults to),
/// then call [`build`](Self::build) for a [`QueueLayer`] or
/// [`build_keyed`](Self::build_keyed) for one queue per key. Both refuse
/// bad values with a [`ConfigError`] naming the field.
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
///     shed_depth = 48
/// "#).unwrap();
/// assert_eq!(config, QueueConfig::new()
///     .name("ingest")
///     .capacity(64)
///     .admission(Admission::Backpressure)
///     .codel(Duration::from_millis(5), Duration::from_millis(100))
///     .shed_depth(48));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    name: String,
    capacity: usize,
    admission: Admission,
    codel: Option<Codel>,
    shed_depth: Option<usize>,
    seed: Option<u64>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            capacity: 1024,
            admission: Admission::FailFast,
            codel: None,
            shed_depth: None,
            seed: None,
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

    /// Sheds calls on depth before the queue is full, by random early
    /// detection: a call that finds `d` calls queued is refused with
    /// [`Reason::Shed`](crate::Reason::Shed) with probability
    /// `(d + 1 - shed_depth) / (capacity - shed_depth)`, whatever the
    /// [`Admission`]. So a call that keeps the depth at or below
    /// `shed_depth` is never shed, the chance rises linearly above it, and
    /// the call that would take the last slot always is: the queue sheds
    /// before it is full, and backpressured callers never pile up to
    /// capacity. Must be at least 1 and below `capacity`. Defaults to off.
    pub fn shed_depth(mut self, shed_depth: usize) -> Self {
        self.shed_depth = Some(shed_depth);
        self
    }

    /// Seeds the random numbers of [`shed_depth`](Self::shed_depth), so
    /// that a test sheds the same calls every run. Defaults to a seed drawn
    /// per queue.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks the values, naming the first field at fault: `capacity` is 0
    /// or above [`MAX_CAPACITY`], `admission` waits zero, `codel.target` or
    /// `codel.interval` is zero, or the target is not below the interval,
    /// `shed_depth` is 0 or not below `capacity`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero("capacity", self.capacity as u64)?;
        validate::at_most("capacity", self.capacity as u64, MAX_CAPACITY as u64)?;
        self.admission.validate("admission")?;
        if let Some(codel) = &self.codel {
            codel.validate()?;
        }
        if let Some(shed_depth) = self.shed_depth {
            validate::non_zero("shed_depth", shed_depth as u64)?;
            if shed_depth >= self.capacity {
                return Err(ConfigError::new(
                    "shed_depth",
                    format!(
                        "must be below capacity ({}), got {shed_depth}",
                        self.capacity
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Validates the values and builds the layer. Metric handles are
    /// registered when the layer makes a queue.
    pub fn build<Req>(self) -> Result<QueueLayer<Req>, ConfigError> {
        self.validate()?;
        Ok(QueueLayer::new(self))
    }

    /// Validates the values and builds a keyed queue layer: one queue with
    /// these values, and its own worker and clone of the inner service,
    /// per key that `key` derives from a request, created on first use and
    /// bounded by `keys` (see [`KeyedMap`](rampart_core::keyed::KeyedMap)).
    /// Each key's metrics carry a `key` label with the key's `Display`
    /// form.
    ///
    /// ```
    /// use rampart_backpressure::QueueConfig;
    /// use rampart_core::keyed::KeyedConfig;
    ///
    /// let layer = QueueConfig::new()
    ///     .capacity(32)
    ///     .build_keyed(
    ///         |req: &http::Request<()>| req.uri().host().unwrap_or_default().to_owned(),
    ///         KeyedConfig::default(),
    ///     )
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn build_keyed<Req, K, F>(
        self,
        key: F,
        keys: KeyedConfig,
    ) -> Result<KeyedQueueLayer<K, F, Req>, ConfigError>
    where
        F: Fn(&Req) -> K,
        K: Hash + Eq + fmt::Display + Send + Sync + 'static,
    {
        self.validate()?;
        keys.validate()?;
        Ok(KeyedQueueLayer::new(self, keys, key))
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

    pub(crate) fn shed_depth_value(&self) -> Option<usize> {
        self.shed_depth
    }

    pub(crate) fn seed_value(&self) -> Option<u64> {
        self.seed
    }
}

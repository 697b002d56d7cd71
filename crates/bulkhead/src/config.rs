//! [`BulkheadConfig`]: the limits of one bulkhead, its builder and its
//! validation.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;
use rampart_core::keyed::KeyedConfig;
use rampart_core::metrics::InstanceLabels;
use serde::Deserialize;

use crate::keyed::KeyedBulkheadLayer;
use crate::layer::BulkheadLayer;
use crate::permit::Shared;

/// The most permits (and the most queued calls) a bulkhead accepts.
pub const MAX_PERMITS: usize = 1_000_000_000;

/// The limits of a bulkhead.
///
/// Build one with the consuming setters (each says what it defaults to),
/// then call [`build`](Self::build) for a [`BulkheadLayer`] or
/// [`build_keyed`](Self::build_keyed) for one bulkhead per key. Both refuse
/// inconsistent limits with a [`ConfigError`] naming the field.
///
/// The defaults are safe in production: 100 calls in flight and no waiting,
/// so that an overloaded dependency sheds excess calls at once instead of
/// queueing them (a queue in front of a slow dependency adds latency to
/// every call and holds the caller's resources). Size `max_concurrent` as
/// peak calls per second × p99 latency of the protected dependency, with
/// some headroom.
///
/// It also deserializes (for the mesh's TOML), with every field optional,
/// durations as `"50ms"` or `"1s"` (an integer is milliseconds) and unknown
/// keys refused:
///
/// ```
/// use rampart_bulkhead::BulkheadConfig;
/// use std::time::Duration;
///
/// let config: BulkheadConfig = toml::from_str(r#"
///     name = "payments"
///     max_concurrent = 32
///     max_wait = "50ms"
///     max_queued = 64
/// "#).unwrap();
/// assert_eq!(config, BulkheadConfig::new()
///     .name("payments")
///     .max_concurrent(32)
///     .max_wait(Duration::from_millis(50))
///     .max_queued(64));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadConfig {
    name: String,
    max_concurrent: usize,
    #[serde(with = "rampart_core::duration")]
    max_wait: Duration,
    max_queued: usize,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            max_concurrent: 100,
            max_wait: Duration::ZERO,
            max_queued: 0,
        }
    }
}

impl BulkheadConfig {
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

    /// The most calls in flight at once. Must be 1 to 1,000,000,000.
    /// Defaults to 100.
    pub fn max_concurrent(mut self, max_concurrent: usize) -> Self {
        self.max_concurrent = max_concurrent;
        self
    }

    /// How long a call may queue for a permit before it fails with
    /// [`BulkheadFull`](crate::BulkheadFull). Zero rejects at once when no
    /// permit is free; a non-zero wait needs [`max_queued`](Self::max_queued)
    /// of at least 1. Defaults to zero.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// The most calls queued for a permit at once; a call arriving when the
    /// queue is full is rejected at once. Must be 0 exactly when
    /// [`max_wait`](Self::max_wait) is zero, and at most 1,000,000,000.
    /// Defaults to 0.
    pub fn max_queued(mut self, max_queued: usize) -> Self {
        self.max_queued = max_queued;
        self
    }

    /// Checks the limits, naming the first field at fault:
    ///
    /// - `max_concurrent` is 0 or above 1,000,000,000;
    /// - `max_queued` is above 1,000,000,000, or 0 while `max_wait` is not
    ///   (a max wait with no queue);
    /// - `max_wait` is zero while `max_queued` is not (a queue with no max
    ///   wait).
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero("max_concurrent", self.max_concurrent as u64)?;
        validate::at_most(
            "max_concurrent",
            self.max_concurrent as u64,
            MAX_PERMITS as u64,
        )?;
        validate::at_most("max_queued", self.max_queued as u64, MAX_PERMITS as u64)?;
        if !self.max_wait.is_zero() && self.max_queued == 0 {
            return Err(ConfigError::new(
                "max_queued",
                "must be at least 1 when max_wait is longer than zero (a max wait with no queue)",
            ));
        }
        if self.max_wait.is_zero() && self.max_queued > 0 {
            return Err(ConfigError::new(
                "max_wait",
                "must be longer than zero when max_queued is at least 1 (a queue with no max wait)",
            ));
        }
        Ok(())
    }

    /// Validates the limits and builds one bulkhead, registering its
    /// metric handles. Every service the layer makes shares it.
    pub fn build(self) -> Result<BulkheadLayer, ConfigError> {
        self.validate()?;
        let labels = InstanceLabels::new(self.name.clone());
        let shared = Shared::new(&self.name, self.limits(), &labels);
        Ok(BulkheadLayer::new(Arc::new(shared)))
    }

    /// Validates the limits and builds a keyed bulkhead: one bulkhead with
    /// these limits per key that `key` derives from a request, created on
    /// first use and bounded by `keys` (see
    /// [`KeyedMap`](rampart_core::keyed::KeyedMap)). Each key's metrics
    /// carry a `key` label with the key's `Display` form.
    ///
    /// ```
    /// use rampart_bulkhead::BulkheadConfig;
    /// use rampart_core::keyed::KeyedConfig;
    ///
    /// let layer = BulkheadConfig::default()
    ///     .max_concurrent(8)
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
    ) -> Result<KeyedBulkheadLayer<K, F>, ConfigError>
    where
        F: Fn(&Req) -> K,
        K: Hash + Eq + fmt::Display + Send + Sync + 'static,
    {
        self.validate()?;
        keys.validate()?;
        Ok(KeyedBulkheadLayer::new(self, keys, key))
    }

    pub(crate) fn name_ref(&self) -> &str {
        &self.name
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_concurrent: self.max_concurrent,
            max_wait: self.max_wait,
            max_queued: self.max_queued,
        }
    }
}

/// The validated limits of one bulkhead instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_concurrent: usize,
    pub(crate) max_wait: Duration,
    pub(crate) max_queued: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = BulkheadConfig::default();
        assert_eq!(
            c.limits(),
            Limits {
                max_concurrent: 100,
                max_wait: Duration::ZERO,
                max_queued: 0
            }
        );
        assert!(c.validate().is_ok());
    }
}

//! Keyed instances: one breaker, bulkhead, limiter or cache per key.
//!
//! A [`KeyedMap`] maps a key derived from the request (upstream authority,
//! route, user) to an instance, created on first use. It is bounded: at most
//! [`KeyedConfig::max_keys`] instances live at once (least recently used go
//! first) and an instance not used for [`KeyedConfig::idle_timeout`] is
//! dropped. It is built on `moka`, whose eviction runs on the wall clock,
//! not on tokio's paused clock.
//!
//! ```
//! use rampart_core::keyed::{KeyedConfig, KeyedMap};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//!
//! let map: KeyedMap<String, Arc<AtomicU32>> = KeyedMap::new(KeyedConfig::default());
//! map.get_or_insert_with("a.example".to_string(), || Arc::new(AtomicU32::new(0)))
//!     .fetch_add(1, Ordering::Relaxed);
//! let again = map.get_or_insert_with("a.example".to_string(), || Arc::new(AtomicU32::new(0)));
//! assert_eq!(again.load(Ordering::Relaxed), 1);
//! ```

use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use crate::error::{ConfigError, validate};
use crate::metrics::InstanceLabels;

/// Bounds of a [`KeyedMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedConfig {
    /// Most instances alive at once. Defaults to 10,000.
    pub max_keys: u64,
    /// Drop an instance unused for this long. Defaults to 10 minutes;
    /// `None` keeps instances until capacity evicts them.
    pub idle_timeout: Option<Duration>,
}

impl Default for KeyedConfig {
    fn default() -> Self {
        Self {
            max_keys: 10_000,
            idle_timeout: Some(Duration::from_secs(600)),
        }
    }
}

impl KeyedConfig {
    /// Checks the bounds: `max_keys` ≥ 1 and a non-zero idle timeout.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero("max_keys", self.max_keys)?;
        if let Some(idle) = self.idle_timeout {
            validate::non_zero_duration("idle_timeout", idle)?;
        }
        Ok(())
    }
}

/// A bounded, concurrent map from key to instance. Cloning shares the map.
pub struct KeyedMap<K, V> {
    cache: moka::sync::Cache<K, V>,
}

impl<K, V> Clone for KeyedMap<K, V> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
        }
    }
}

impl<K, V> fmt::Debug for KeyedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedMap")
            .field("len", &self.cache.entry_count())
            .finish()
    }
}

impl<K, V> KeyedMap<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A map with the given bounds. Call [`KeyedConfig::validate`] first
    /// when the bounds come from user input.
    pub fn new(config: KeyedConfig) -> Self {
        let mut builder = moka::sync::Cache::builder().max_capacity(config.max_keys.max(1));
        if let Some(idle) = config.idle_timeout {
            builder = builder.time_to_idle(idle);
        }
        Self {
            cache: builder.build(),
        }
    }

    /// The instance for `key`, created by `init` if absent. Concurrent
    /// callers for the same absent key run `init` once.
    pub fn get_or_insert_with(&self, key: K, init: impl FnOnce() -> V) -> V {
        self.cache.get_with(key, init)
    }

    /// The instance for `key`, built on first use by `build` from `labels`
    /// with a `key` label added: the one way every keyed layer makes its
    /// per-key instances (the labels are only formatted for a new key).
    pub fn get_or_build(
        &self,
        key: K,
        labels: &InstanceLabels,
        build: impl FnOnce(&InstanceLabels) -> V,
    ) -> V
    where
        K: fmt::Display,
    {
        if let Some(found) = self.cache.get(&key) {
            return found;
        }
        let labels = labels.with_key(key.to_string());
        self.cache.get_with(key, || build(&labels))
    }

    /// The instance for `key`, if present.
    pub fn get(&self, key: &K) -> Option<V> {
        self.cache.get(key)
    }

    /// Removes the instance for `key`.
    pub fn remove(&self, key: &K) {
        self.cache.invalidate(key);
    }

    /// The number of instances (approximate until pending evictions run).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// `true` when no instance is alive.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of every key and its instance.
    pub fn entries(&self) -> Vec<(std::sync::Arc<K>, V)> {
        self.cache.iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn bounded_by_max_keys() {
        let map: KeyedMap<u32, u32> = KeyedMap::new(KeyedConfig {
            max_keys: 8,
            idle_timeout: None,
        });
        for k in 0..100 {
            map.get_or_insert_with(k, || k);
        }
        assert!(map.len() <= 8, "len {}", map.len());
    }

    #[test]
    fn init_runs_once_per_key() {
        let map: KeyedMap<&'static str, u32> = KeyedMap::new(KeyedConfig::default());
        let calls = AtomicUsize::new(0);
        for _ in 0..10 {
            map.get_or_insert_with("k", || {
                calls.fetch_add(1, Ordering::SeqCst);
                7
            });
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(map.get(&"k"), Some(7));
        map.remove(&"k");
        assert_eq!(map.get(&"k"), None);
    }

    #[test]
    fn rejects_bad_bounds() {
        let bad = KeyedConfig {
            max_keys: 0,
            idle_timeout: None,
        };
        assert_eq!(bad.validate().unwrap_err().field(), "max_keys");
        let bad = KeyedConfig {
            max_keys: 1,
            idle_timeout: Some(Duration::ZERO),
        };
        assert_eq!(bad.validate().unwrap_err().field(), "idle_timeout");
    }
}

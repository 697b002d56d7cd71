//! [`CacheConfig`]: the settings of one cache, as data (setters and TOML),
//! and their validation.

use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;
use serde::Deserialize;

use crate::builder::CacheBuilder;

/// The largest `early_refresh` factor accepted (XFetch's β; 1.0 is the
/// usual value, above a few refreshes absurdly early).
pub const MAX_EARLY_REFRESH: f64 = 100.0;

/// The settings of a cache: capacity, lifetimes and the defences that are
/// plain values. The functions a cache needs (how to key a request, what
/// counts as "not found", how much an entry weighs) are given to the
/// [`CacheBuilder`] that [`builder`](Self::builder) returns.
///
/// Every setter says what it defaults to. It also deserializes (for the
/// mesh's TOML), with every field optional, durations as `"50ms"` or
/// `"10s"` (an integer is milliseconds) and unknown keys refused:
///
/// ```
/// use rampart_cache::CacheConfig;
/// use std::time::Duration;
///
/// let config: CacheConfig = toml::from_str(r#"
///     name = "users"
///     max_capacity = 50000
///     ttl = "5m"
///     ttl_jitter = 0.2
///     negative_ttl = "5s"
///     stale_while_revalidate = "30s"
/// "#).unwrap();
/// assert_eq!(config, CacheConfig::new()
///     .name("users")
///     .max_capacity(50_000)
///     .ttl(Duration::from_secs(300))
///     .ttl_jitter(0.2)
///     .negative_ttl(Duration::from_secs(5))
///     .stale_while_revalidate(Duration::from_secs(30)));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub(crate) name: String,
    pub(crate) max_capacity: u64,
    #[serde(with = "rampart_core::duration")]
    pub(crate) ttl: Duration,
    #[serde(with = "rampart_core::duration::option")]
    pub(crate) tti: Option<Duration>,
    pub(crate) ttl_jitter: f64,
    #[serde(with = "rampart_core::duration")]
    pub(crate) negative_ttl: Duration,
    pub(crate) max_entry_weight: Option<u32>,
    #[serde(with = "rampart_core::duration::option")]
    pub(crate) stale_while_revalidate: Option<Duration>,
    pub(crate) early_refresh: Option<f64>,
    #[serde(with = "rampart_core::duration")]
    pub(crate) log_interval: Duration,
    pub(crate) seed: Option<u64>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            max_capacity: 10_000,
            ttl: Duration::from_secs(300),
            tti: None,
            ttl_jitter: 0.1,
            negative_ttl: Duration::from_secs(10),
            max_entry_weight: None,
            stale_while_revalidate: None,
            early_refresh: None,
            log_interval: Duration::from_secs(10),
            seed: None,
        }
    }
}

impl CacheConfig {
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

    /// The local tier's bound: a number of entries, or, when the builder
    /// has a [`weigher`](CacheBuilder::weigher), a total weight in the
    /// weigher's unit (bytes, say). The least valuable entries are evicted
    /// beyond it (moka's TinyLFU). Must be at least 1. Defaults to 10,000.
    pub fn max_capacity(mut self, max_capacity: u64) -> Self {
        self.max_capacity = max_capacity;
        self
    }

    /// How long an entry is fresh after it was loaded, before
    /// [`ttl_jitter`](Self::ttl_jitter). A response may set its own
    /// lifetime through [`CacheBuilder::lifetime`]. Must be longer than
    /// zero. Defaults to 5 minutes.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Drop an entry not read for this long, even if its TTL has not
    /// passed. An idle entry is gone for good: it is never served stale.
    /// Must be longer than zero. Defaults to none.
    pub fn tti(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// Spread each entry's TTL (and negative TTL) uniformly over
    /// `ttl × (1 ± jitter)`, so that entries loaded together do not expire
    /// together (an avalanche of misses onto the upstream). Must be within
    /// `0.0..1.0`. Defaults to 0.1 (± 10 %).
    pub fn ttl_jitter(mut self, jitter: f64) -> Self {
        self.ttl_jitter = jitter;
        self
    }

    /// How long a "not found" answer (see [`CacheBuilder::negative`]) is
    /// cached, with the same jitter. Must be longer than zero. Defaults to
    /// 10 seconds.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Values heavier than this (by the builder's
    /// [`weigher`](CacheBuilder::weigher), which it needs) are served but
    /// not cached, and counted; they are never truncated. Must be at least
    /// 1 and at most `max_capacity`. Defaults to none.
    pub fn max_entry_weight(mut self, weight: u32) -> Self {
        self.max_entry_weight = Some(weight);
        self
    }

    /// After an entry's TTL and within `window`, serve the stale value at
    /// once and refresh it with one background call to the upstream (the
    /// request that found it stale is the one sent). Must be longer than
    /// zero. Defaults to none: an expired entry is a miss.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale_while_revalidate = Some(window);
        self
    }

    /// Probabilistic early refresh (XFetch): a hit refreshes the entry in
    /// the background with a probability that rises as its expiry nears,
    /// scaled by how long the entry took to load and by `beta` (1.0 is the
    /// usual value; higher refreshes earlier). At most one refresh per
    /// entry runs at a time. Must be above 0 and at most 100. Defaults to
    /// none.
    pub fn early_refresh(mut self, beta: f64) -> Self {
        self.early_refresh = Some(beta);
        self
    }

    /// Remote-tier failures are logged at most once per `interval` (they
    /// are all counted). Must be longer than zero. Defaults to 10 seconds.
    pub fn log_interval(mut self, interval: Duration) -> Self {
        self.log_interval = interval;
        self
    }

    /// Seed the random numbers of jitter and early refresh, so that a test
    /// repeats. Defaults to a seed drawn per cache.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks the values, naming the first field at fault:
    ///
    /// - `max_capacity` is 0;
    /// - `ttl`, `negative_ttl`, `log_interval`, `tti` or
    ///   `stale_while_revalidate` is zero;
    /// - `ttl_jitter` is not within `0.0..1.0`;
    /// - `max_entry_weight` is 0 or above `max_capacity`;
    /// - `early_refresh` is not above 0 and at most 100.
    ///
    /// [`CacheBuilder::build`] also checks that the functions the values
    /// need were given (a weigher for `max_entry_weight`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero("max_capacity", self.max_capacity)?;
        validate::non_zero_duration("ttl", self.ttl)?;
        if let Some(tti) = self.tti {
            validate::non_zero_duration("tti", tti)?;
        }
        validate::ratio("ttl_jitter", self.ttl_jitter)?;
        if self.ttl_jitter >= 1.0 {
            return Err(ConfigError::new(
                "ttl_jitter",
                format!("must be below 1.0, got {}", self.ttl_jitter),
            ));
        }
        validate::non_zero_duration("negative_ttl", self.negative_ttl)?;
        if let Some(w) = self.max_entry_weight {
            validate::non_zero("max_entry_weight", w)?;
            validate::at_most("max_entry_weight", u64::from(w), self.max_capacity)?;
        }
        if let Some(window) = self.stale_while_revalidate {
            validate::non_zero_duration("stale_while_revalidate", window)?;
        }
        if let Some(beta) = self.early_refresh
            && !(beta > 0.0 && beta <= MAX_EARLY_REFRESH)
        {
            return Err(ConfigError::new(
                "early_refresh",
                format!("must be above 0 and at most {MAX_EARLY_REFRESH}, got {beta}"),
            ));
        }
        validate::non_zero_duration("log_interval", self.log_interval)?;
        Ok(())
    }

    /// A builder for a cache with these settings, keying requests with
    /// `key`: `None` sends the request straight to the upstream, bypassing
    /// the cache. The cached value is the response itself (so it must be
    /// `Clone`); see [`builder_with`](Self::builder_with) to store
    /// something else.
    pub fn builder<Req, Resp, K, F>(self, key: F) -> CacheBuilder<Req, Resp, K, Resp>
    where
        F: Fn(&Req) -> Option<K> + Send + Sync + 'static,
        Resp: Clone + Send + Sync + 'static,
    {
        CacheBuilder::new(
            self,
            key,
            |resp: &Resp| Some(resp.clone()),
            |value: &Resp| value.clone(),
        )
    }

    /// A builder for a cache that stores `to_value(&response)` (nothing
    /// when it returns `None`: that response is passed on uncached) and
    /// answers hits with `from_value(&value)`. Use it when the response is
    /// not `Clone` (an HTTP response with a streaming body) or is bigger
    /// than what is worth keeping.
    pub fn builder_with<Req, Resp, K, V, F, To, From>(
        self,
        key: F,
        to_value: To,
        from_value: From,
    ) -> CacheBuilder<Req, Resp, K, V>
    where
        F: Fn(&Req) -> Option<K> + Send + Sync + 'static,
        To: Fn(&Resp) -> Option<V> + Send + Sync + 'static,
        From: Fn(&V) -> Resp + Send + Sync + 'static,
    {
        CacheBuilder::new(self, key, to_value, from_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(CacheConfig::default().validate().is_ok());
    }
}

//! [`CacheBuilder`]: the functions a cache needs, on top of its
//! [`CacheConfig`].

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use rampart_core::ConfigError;
use rampart_core::clock::Origin;
use rampart_core::metrics::InstanceLabels;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bloom::KnownKeys;
use crate::config::CacheConfig;
use crate::entry::{Entry, Lifetime, MemoryBound};
use crate::layer::CacheLayer;
use crate::remote::{Codec, RemoteCache};
use crate::shared::{Hooks, Known, Shared};
use crate::stats::Stats;
use crate::two_tier::RemoteTier;

/// Builds a [`CacheLayer`]: from [`CacheConfig::builder`] (the response is
/// the value) or [`CacheConfig::builder_with`] (a value converted from the
/// response), plus the optional functions below, then
/// [`build`](Self::build).
///
/// `Req` is the request, `Resp` the response, `K` the key and `V` the
/// cached value.
pub struct CacheBuilder<Req, Resp, K, V> {
    config: CacheConfig,
    hooks: Hooks<Req, Resp, K, V>,
    remote: Option<RemoteTier<K, V>>,
}

impl<Req, Resp, K, V> CacheBuilder<Req, Resp, K, V> {
    pub(crate) fn new(
        config: CacheConfig,
        key: impl Fn(&Req) -> Option<K> + Send + Sync + 'static,
        to_value: impl Fn(&Resp) -> Option<V> + Send + Sync + 'static,
        from_value: impl Fn(&V) -> Resp + Send + Sync + 'static,
    ) -> Self {
        Self {
            config,
            hooks: Hooks {
                key: Box::new(key),
                to_value: Box::new(to_value),
                from_value: Box::new(from_value),
                negative: None,
                lifetime: None,
                weigher: None,
                known: None,
            },
            remote: None,
        }
    }

    /// Values for which `is_negative` is true are "not found" answers
    /// (`Ok(None)`, a 404): cached for
    /// [`negative_ttl`](CacheConfig::negative_ttl) instead of the TTL, so
    /// that repeated requests for a missing key do not all reach the
    /// upstream (penetration). Defaults to none: every value is positive.
    pub fn negative(mut self, is_negative: impl Fn(&V) -> bool + Send + Sync + 'static) -> Self {
        self.hooks.negative = Some(Box::new(is_negative));
        self
    }

    /// Each (positive) value's own lifetime: the configured TTL, a
    /// duration of its own (an HTTP `max-age`), or not cached at all
    /// (`no-store`). Defaults to [`Lifetime::Default`] for
    /// every value.
    pub fn lifetime(mut self, lifetime: impl Fn(&V) -> Lifetime + Send + Sync + 'static) -> Self {
        self.hooks.lifetime = Some(Box::new(lifetime));
        self
    }

    /// Weighs each entry (in bytes, say), computed once when it is stored.
    /// With a weigher, [`max_capacity`](CacheConfig::max_capacity) bounds
    /// the total weight instead of the number of entries, and
    /// [`max_entry_weight`](CacheConfig::max_entry_weight) can refuse heavy
    /// values. Defaults to none: every entry weighs 1.
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.hooks.weigher = Some(Box::new(weigher));
        self
    }

    /// Defends against penetration (requests for keys that do not exist,
    /// which no cache would otherwise stop): a request whose key `keys`
    /// rejects is answered `absent(&key)` at once, without touching either
    /// tier or the upstream; every positive value loaded (or read from the
    /// remote tier) inserts its key into `keys`. Keep `keys` fed: with a
    /// [`KeySource`](crate::bloom::KeySource), call
    /// [`KnownKeys::rebuild`] once at start or
    /// [`KnownKeys::spawn_rebuilds`]; without one, [`insert`](KnownKeys::insert)
    /// every key your application creates, or it will be answered
    /// "absent" until it has been loaded once some other way. A false
    /// positive (about the configured rate) goes on to the cache as usual,
    /// where the [negative cache](Self::negative) catches repeats. Defaults
    /// to none.
    pub fn known_keys(
        mut self,
        keys: KnownKeys<K>,
        absent: impl Fn(&K) -> Resp + Send + Sync + 'static,
    ) -> Self {
        self.hooks.known = Some(Known {
            keys,
            absent: Box::new(absent),
        });
        self
    }

    /// Adds a remote tier shared by many processes: a local miss reads
    /// `store` before the upstream, a load fills both tiers, and
    /// [`Handle::invalidate`](crate::Handle::invalidate) invalidates
    /// remotely too. Values travel encoded by `codec`; `to_key` names a key
    /// in the store (prefix it per cache) and `from_key` maps a name back,
    /// so that invalidations broadcast by other processes drop the local
    /// copy (`None`: not one of this cache's keys). A remote failure or an
    /// undecodable value is a miss, counted and logged, never the caller's
    /// error. Defaults to none: local tier only.
    pub fn remote(
        mut self,
        store: Arc<dyn RemoteCache>,
        codec: Codec,
        to_key: impl Fn(&K) -> String + Send + Sync + 'static,
        from_key: impl Fn(&str) -> Option<K> + Send + Sync + 'static,
    ) -> Self
    where
        V: Serialize + DeserializeOwned,
    {
        self.remote = Some(RemoteTier::new(store, codec, to_key, from_key));
        self
    }
}

impl<Req, Resp, K, V> CacheBuilder<Req, Resp, K, V>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// Checks the configuration (see [`CacheConfig::validate`]) and that
    /// the functions it needs were given (`max_entry_weight` needs a
    /// [`weigher`](Self::weigher)), then builds the cache and registers its
    /// metric handles. Every service the layer makes shares the cache.
    pub fn build(self) -> Result<CacheLayer<Req, Resp, K, V>, ConfigError> {
        let config = self.config;
        config.validate()?;
        if config.max_entry_weight.is_some() && self.hooks.weigher.is_none() {
            return Err(ConfigError::new(
                "max_entry_weight",
                "needs a weigher (CacheBuilder::weigher) to weigh values",
            ));
        }
        let origin = Origin::new();
        let stats = Arc::new(Stats::new(&InstanceLabels::new(config.name.clone())));
        let listened = Arc::clone(&stats);
        let local = moka::future::Cache::builder()
            .max_capacity(config.max_capacity)
            .weigher(|_: &K, entry: &Arc<Entry<V>>| entry.weight)
            .expire_after(MemoryBound {
                origin,
                tti: config.tti,
            })
            .eviction_listener(move |_, _, cause| match cause {
                moka::notification::RemovalCause::Expired => listened.evicted_expired.add(),
                moka::notification::RemovalCause::Size => listened.evicted_size.add(),
                _ => {}
            })
            .build();
        let shared = Shared::new(config, self.hooks, local, origin, stats, self.remote);
        Ok(CacheLayer::new(Arc::new(shared)))
    }
}

impl<Req, Resp, K, V> fmt::Debug for CacheBuilder<Req, Resp, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("config", &self.config)
            .field("negative", &self.hooks.negative.is_some())
            .field("lifetime", &self.hooks.lifetime.is_some())
            .field("weigher", &self.hooks.weigher.is_some())
            .field("known_keys", &self.hooks.known.is_some())
            .field("remote", &self.remote.is_some())
            .finish()
    }
}

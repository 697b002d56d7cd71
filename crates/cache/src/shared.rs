//! [`Shared`]: one cache's state, shared by its layer, services and
//! handle; the read path (hit, stale, miss), single-flight loads and
//! background refreshes.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache as Moka;
use moka::ops::compute::Op;
use rampart_core::BoxError;
use rampart_core::clock::{Origin, nanos};
use rampart_core::random::{SharedRng, fresh_seed};
use tower_service::Service;

use crate::bloom::KnownKeys;
use crate::config::CacheConfig;
use crate::entry::{Entry, Lifetime, State, jittered, refresh_early};
use crate::error::LoadFailed;
use crate::stats::Stats;
use crate::two_tier::RemoteTier;

/// A user function, shared by every request.
pub(crate) type UserFn<A, R> = Box<dyn Fn(&A) -> R + Send + Sync>;

/// Weighs an entry.
pub(crate) type Weigher<K, V> = Box<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// The user's functions.
pub(crate) struct Hooks<Req, Resp, K, V> {
    pub(crate) key: UserFn<Req, Option<K>>,
    pub(crate) to_value: UserFn<Resp, Option<V>>,
    pub(crate) from_value: UserFn<V, Resp>,
    pub(crate) negative: Option<UserFn<V, bool>>,
    pub(crate) lifetime: Option<UserFn<V, Lifetime>>,
    pub(crate) weigher: Option<Weigher<K, V>>,
    pub(crate) known: Option<Known<K, Resp>>,
}

/// The penetration defence: keys known to exist, and the answer for the
/// others.
pub(crate) struct Known<K, Resp> {
    pub(crate) keys: KnownKeys<K>,
    pub(crate) absent: UserFn<K, Resp>,
}

/// Why a load put nothing in the local tier; moka hands it, shared, to
/// every request that waited for the load.
pub(crate) enum Unstored<V> {
    /// The upstream failed.
    Failed(Arc<BoxError>),
    /// A value not to keep (oversized, or `Lifetime::DoNotCache`).
    Value(V),
    /// The response had no value (`to_value` gave `None`): waiters call
    /// the upstream themselves.
    NoValue,
}

/// Logs at most once per interval.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    next: AtomicU64,
    interval: u64,
}

impl LogLimiter {
    fn new(interval: Duration) -> Self {
        Self {
            next: AtomicU64::new(0),
            interval: nanos(interval),
        }
    }

    /// Whether to log now; true at most once per interval.
    pub(crate) fn allow(&self, now: u64) -> bool {
        let next = self.next.load(Ordering::Relaxed);
        now >= next
            && self
                .next
                .compare_exchange(
                    next,
                    now.saturating_add(self.interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

/// The validated settings the read path uses.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) ttl: Duration,
    pub(crate) ttl_jitter: f64,
    pub(crate) negative_ttl: Duration,
    pub(crate) tti: Option<u64>,
    pub(crate) swr: Option<Duration>,
    pub(crate) early_refresh: Option<f64>,
    pub(crate) max_entry_weight: Option<u32>,
}

/// One cache.
pub(crate) struct Shared<Req, Resp, K, V> {
    pub(crate) name: String,
    pub(crate) hooks: Hooks<Req, Resp, K, V>,
    pub(crate) local: Moka<K, Arc<Entry<V>>>,
    pub(crate) origin: Origin,
    pub(crate) settings: Settings,
    pub(crate) random: SharedRng,
    pub(crate) stats: Arc<Stats>,
    pub(crate) remote: Option<RemoteTier<K, V>>,
    pub(crate) log: LogLimiter,
}

impl<Req, Resp, K, V> fmt::Debug for Shared<Req, Resp, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.name)
            .field("entries", &self.local.entry_count())
            .field("settings", &self.settings)
            .field("remote", &self.remote.is_some())
            .finish()
    }
}

impl<Req, Resp, K, V> Shared<Req, Resp, K, V>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    pub(crate) fn new(
        config: CacheConfig,
        hooks: Hooks<Req, Resp, K, V>,
        local: Moka<K, Arc<Entry<V>>>,
        origin: Origin,
        stats: Arc<Stats>,
        remote: Option<RemoteTier<K, V>>,
    ) -> Self {
        Self {
            settings: Settings {
                ttl: config.ttl,
                ttl_jitter: config.ttl_jitter,
                negative_ttl: config.negative_ttl,
                tti: config.tti.map(nanos),
                swr: config.stale_while_revalidate,
                early_refresh: config.early_refresh,
                max_entry_weight: config.max_entry_weight,
            },
            random: SharedRng::new(config.seed.unwrap_or_else(fresh_seed)),
            log: LogLimiter::new(config.log_interval),
            name: config.name,
            hooks,
            local,
            origin,
            stats,
            remote,
        }
    }

    /// The "absent" answer for a key the bloom filter of known keys
    /// rejects (penetration: it never reaches the local tier, the remote
    /// tier or the upstream); `None` when the key may exist or there is no
    /// filter.
    pub(crate) fn reject_unknown(&self, key: &K) -> Option<Resp> {
        let known = self.hooks.known.as_ref()?;
        if known.keys.might_exist(key) {
            return None;
        }
        self.stats.bloom_rejected.add();
        Some((known.absent)(key))
    }

    /// Answers `req` (keyed `key`) from the cache, or loads it through
    /// `svc` (ready to be called).
    pub(crate) async fn serve<S>(
        self: Arc<Self>,
        svc: S,
        req: Req,
        key: K,
    ) -> Result<Resp, BoxError>
    where
        S: Service<Req, Response = Resp> + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
    {
        self.start_listener();
        let now = self.origin.nanos();
        if let Some(entry) = self.local.get(&key).await {
            match entry.state(now, self.settings.tti) {
                State::Fresh => {
                    entry.touch(now);
                    if entry.negative {
                        self.stats.negative_hits.add();
                    } else {
                        self.stats.hits.add();
                    }
                    if self.refresh_early(now, &entry) && entry.claim_refresh() {
                        self.spawn_refresh(svc, req, key, Arc::clone(&entry));
                    }
                    return Ok((self.hooks.from_value)(&entry.value));
                }
                State::Stale => {
                    self.stats.stale_served.add();
                    if entry.claim_refresh() {
                        self.spawn_refresh(svc, req, key, Arc::clone(&entry));
                    }
                    return Ok((self.hooks.from_value)(&entry.value));
                }
                State::Expired => self.remove_if_same(&key, &entry).await,
            }
        }
        self.stats.misses.add();
        self.load(svc, req, key).await
    }

    fn refresh_early(&self, now: u64, entry: &Entry<V>) -> bool {
        self.settings.early_refresh.is_some_and(|beta| {
            refresh_early(
                now,
                entry.expires_at(),
                entry.load_nanos,
                beta,
                self.random.unit(),
            )
        })
    }

    /// Removes `key`'s entry if it is still `old` (an entry expired on
    /// tokio's clock that moka, on its own clock, still holds).
    pub(crate) async fn remove_if_same(&self, key: &K, old: &Arc<Entry<V>>) {
        let old = Arc::clone(old);
        self.local
            .entry_by_ref(key)
            .and_compute_with(|current| async move {
                match current {
                    Some(c) if Arc::ptr_eq(c.value(), &old) => Op::Remove,
                    _ => Op::Nop,
                }
            })
            .await;
    }

    /// A miss: one load per key however many requests miss it at once
    /// (moka's `try_get_with`); the others wait for its result.
    async fn load<S>(self: &Arc<Self>, svc: S, req: Req, key: K) -> Result<Resp, BoxError>
    where
        S: Service<Req, Response = Resp> + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
    {
        let mut call = Some((svc, req));
        let mut own = None;
        let init = async {
            match call.take() {
                Some((svc, req)) => self.load_entry(svc, req, &key, &mut own).await,
                None => Err(Unstored::NoValue),
            }
        };
        let outcome = self.local.try_get_with(key.clone(), init).await;
        // The request that loaded answers with its own response.
        if let Some(resp) = own {
            return Ok(resp);
        }
        match outcome {
            Ok(entry) => Ok((self.hooks.from_value)(&entry.value)),
            Err(unstored) => match &*unstored {
                Unstored::Failed(e) => Err(LoadFailed::new(Arc::clone(e)).into()),
                Unstored::Value(v) => Ok((self.hooks.from_value)(v)),
                Unstored::NoValue => match call {
                    Some((mut svc, req)) => svc.call(req).await.map_err(Into::into),
                    None => Err(LoadFailed::new(Arc::new("the load gave no value".into())).into()),
                },
            },
        }
    }

    /// The load itself: the remote tier, then the upstream.
    async fn load_entry<S>(
        self: &Arc<Self>,
        mut svc: S,
        req: Req,
        key: &K,
        own: &mut Option<Resp>,
    ) -> Result<Arc<Entry<V>>, Unstored<V>>
    where
        S: Service<Req, Response = Resp>,
        S::Error: Into<BoxError>,
    {
        if let Some(remote) = &self.remote
            && let Some(value) = self.remote_get(remote, key).await
        {
            return self.admit(key, value, 0, false).map(Arc::new);
        }
        self.stats.loads.add();
        let started = self.origin.nanos();
        let resp = match svc.call(req).await {
            Ok(resp) => resp,
            Err(e) => {
                self.stats.load_failures.add();
                return Err(Unstored::Failed(Arc::new(e.into())));
            }
        };
        let took = self.origin.nanos().saturating_sub(started);
        let value = (self.hooks.to_value)(&resp);
        *own = Some(resp);
        match value {
            Some(value) => self.admit(key, value, took, true).map(Arc::new),
            None => {
                self.stats.uncacheable.add();
                Err(Unstored::NoValue)
            }
        }
    }

    /// Makes an entry of a loaded value, or says why it is not kept; fills
    /// the remote tier with it when `fill_remote`.
    fn admit(
        self: &Arc<Self>,
        key: &K,
        value: V,
        load_nanos: u64,
        fill_remote: bool,
    ) -> Result<Entry<V>, Unstored<V>> {
        let s = &self.settings;
        let negative = self.hooks.negative.as_ref().is_some_and(|f| f(&value));
        let (ttl, swr) = if negative {
            (
                jittered(s.negative_ttl, s.ttl_jitter, self.random.unit()),
                s.swr,
            )
        } else {
            match self
                .hooks
                .lifetime
                .as_ref()
                .map_or(Lifetime::Default, |f| f(&value))
            {
                Lifetime::Default => (jittered(s.ttl, s.ttl_jitter, self.random.unit()), s.swr),
                Lifetime::For(ttl) if !ttl.is_zero() => (ttl, s.swr),
                Lifetime::ForNoStale(ttl) if !ttl.is_zero() => (ttl, None),
                Lifetime::For(_) | Lifetime::ForNoStale(_) | Lifetime::DoNotCache => {
                    self.stats.uncacheable.add();
                    return Err(Unstored::Value(value));
                }
            }
        };
        let weight = self.hooks.weigher.as_ref().map_or(1, |w| w(key, &value));
        if s.max_entry_weight.is_some_and(|max| weight > max) {
            self.stats.oversized.add();
            tracing::debug!(name = %self.name, weight, "cache value over max_entry_weight, not stored");
            return Err(Unstored::Value(value));
        }
        if fill_remote && let Some(remote) = &self.remote {
            self.remote_set(remote, key, &value, ttl);
        }
        if !negative && let Some(known) = &self.hooks.known {
            known.keys.insert(key);
        }
        let now = self.origin.nanos();
        Ok(Entry::new(
            value, negative, now, ttl, swr, load_nanos, weight,
        ))
    }

    /// Refreshes `key` in the background with `req` through `svc`, while
    /// `old` is served; `old` was claimed for it.
    fn spawn_refresh<S>(self: &Arc<Self>, mut svc: S, req: Req, key: K, old: Arc<Entry<V>>)
    where
        S: Service<Req, Response = Resp> + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
    {
        self.stats.refreshes.add();
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            let started = shared.origin.nanos();
            // `svc` was made ready by the request that found the entry.
            let resp: Result<Resp, BoxError> = svc.call(req).await.map_err(Into::into);
            match resp {
                Ok(resp) => {
                    let took = shared.origin.nanos().saturating_sub(started);
                    let admitted = match (shared.hooks.to_value)(&resp) {
                        Some(value) => shared.admit(&key, value, took, true).ok(),
                        None => {
                            shared.stats.uncacheable.add();
                            None
                        }
                    };
                    match admitted {
                        Some(entry) => shared.local.insert(key, Arc::new(entry)).await,
                        // The upstream now says "do not keep": drop the old value.
                        None => shared.remove_if_same(&key, &old).await,
                    }
                }
                Err(e) => {
                    shared.stats.refresh_failures.add();
                    tracing::debug!(name = %shared.name, error = %e, "cache refresh failed");
                    old.release_refresh();
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_at_most_once_per_interval() {
        let log = LogLimiter::new(Duration::from_nanos(100));
        assert!(log.allow(0));
        assert!(!log.allow(50));
        assert!(!log.allow(99));
        assert!(log.allow(100));
        assert!(!log.allow(150));
        assert!(log.allow(1_000));
    }
}

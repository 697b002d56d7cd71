//! [`Handle`]: a cache's counters and invalidation.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use crate::remote::{BoxFuture, RemoteError};
use crate::shared::Shared;
use crate::stats::Snapshot;

/// What a handle can do, whatever the request and value types.
trait Control<K>: Send + Sync {
    fn name(&self) -> &str;
    fn snapshot(&self) -> Snapshot;
    fn entry_count(&self) -> u64;
    fn weighted_size(&self) -> u64;
    fn invalidate<'a>(&'a self, key: &'a K) -> BoxFuture<'a, Result<(), RemoteError>>;
    fn run_pending_tasks(&self) -> BoxFuture<'_, ()>;
}

impl<Req, Resp, K, V> Control<K> for Shared<Req, Resp, K, V>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn snapshot(&self) -> Snapshot {
        self.stats.snapshot()
    }

    fn entry_count(&self) -> u64 {
        self.local.entry_count()
    }

    fn weighted_size(&self) -> u64 {
        self.local.weighted_size()
    }

    fn invalidate<'a>(&'a self, key: &'a K) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(Shared::invalidate(self, key))
    }

    fn run_pending_tasks(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.local.run_pending_tasks())
    }
}

/// A cloneable handle on one cache, from
/// [`CacheLayer::handle`](crate::CacheLayer::handle) or
/// [`Cache::handle`](crate::Cache::handle).
///
/// ```
/// use rampart_cache::CacheConfig;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = CacheConfig::new().builder(|id: &u32| Some(*id)).build().unwrap();
/// let handle = layer.handle();
/// let svc = layer.layer(service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id * 2) }));
/// svc.clone().oneshot(21).await.unwrap();
/// svc.clone().oneshot(21).await.unwrap();
/// let stats = handle.stats();
/// assert_eq!((stats.misses, stats.loads, stats.hits), (1, 1, 1));
/// handle.invalidate(&21).await.unwrap();
/// svc.oneshot(21).await.unwrap();
/// assert_eq!(handle.stats().loads, 2);
/// # }
/// ```
#[derive(Clone)]
pub struct Handle<K> {
    shared: Arc<dyn Control<K>>,
}

impl<K> Handle<K> {
    pub(crate) fn new<Req, Resp, V>(shared: Arc<Shared<Req, Resp, K, V>>) -> Self
    where
        Req: Send + 'static,
        Resp: Send + 'static,
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Send + Sync + 'static,
    {
        Self { shared }
    }

    /// The instance name given to the config (may be empty).
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// Every counter at once, since the cache was built.
    pub fn stats(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// Entries in the local tier (approximate: moka applies writes in
    /// batches; see [`run_pending_tasks`](Self::run_pending_tasks)).
    pub fn entry_count(&self) -> u64 {
        self.shared.entry_count()
    }

    /// The local tier's total weight (the entry count without a weigher).
    pub fn weighted_size(&self) -> u64 {
        self.shared.weighted_size()
    }

    /// Drops `key` from the local tier and, with a remote tier, deletes it
    /// there and broadcasts its invalidation so that every other process
    /// drops its local copy. The local copy is gone even when the remote
    /// call fails; the error says the other processes may not know.
    ///
    /// A load of `key` already in flight may still store the value it
    /// loaded: invalidate after the write that made it stale has
    /// committed, and a later load reads the new value.
    pub async fn invalidate(&self, key: &K) -> Result<(), RemoteError> {
        self.shared.invalidate(key).await
    }

    /// Runs moka's pending maintenance now: evictions, their counting, an
    /// exact entry count. Mostly for tests; moka does it by itself as the
    /// cache is used.
    pub async fn run_pending_tasks(&self) {
        self.shared.run_pending_tasks().await;
    }
}

impl<K> fmt::Debug for Handle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.name())
            .field("entries", &self.entry_count())
            .finish()
    }
}

//! [`CacheLayer`]: the layer.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use tower_layer::Layer;
use tower_service::Service;

use crate::handle::Handle;
use crate::service::Cache;
use crate::shared::Shared;

/// Puts a cache in front of services. Built by
/// [`CacheBuilder::build`](crate::CacheBuilder::build).
///
/// The layer owns one cache: every service it makes (and every clone of
/// those) shares its entries, loads and counters. Cloning the layer is
/// cheap and shares the cache too.
pub struct CacheLayer<Req, Resp, K, V> {
    shared: Arc<Shared<Req, Resp, K, V>>,
}

impl<Req, Resp, K, V> CacheLayer<Req, Resp, K, V> {
    pub(crate) fn new(shared: Arc<Shared<Req, Resp, K, V>>) -> Self {
        Self { shared }
    }
}

impl<Req, Resp, K, V> CacheLayer<Req, Resp, K, V>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// A handle on this layer's cache: counters and invalidation.
    pub fn handle(&self) -> Handle<K> {
        Handle::new(self.shared.clone())
    }
}

impl<Req, Resp, K, V> Clone for CacheLayer<Req, Resp, K, V> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, Req, Resp, K, V> Layer<S> for CacheLayer<Req, Resp, K, V>
where
    S: Service<Req, Response = Resp>,
{
    type Service = Cache<S, Req, Resp, K, V>;

    fn layer(&self, inner: S) -> Self::Service {
        Cache::new(inner, Arc::clone(&self.shared))
    }
}

impl<Req, Resp, K, V> fmt::Debug for CacheLayer<Req, Resp, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CacheLayer").field(&self.shared).finish()
    }
}

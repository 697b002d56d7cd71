//! [`Cache`]: the service.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};

use rampart_core::BoxError;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::handle::Handle;
use crate::shared::Shared;

/// A service answering from a cache, loading misses from the inner
/// service. Made by [`CacheLayer`](crate::CacheLayer).
///
/// The inner service must be `Clone`: the service it made ready goes with
/// the request into a load or a background refresh, and a clone takes its
/// place.
pub struct Cache<S, Req, Resp, K, V> {
    inner: S,
    shared: Arc<Shared<Req, Resp, K, V>>,
}

impl<S, Req, Resp, K, V> Cache<S, Req, Resp, K, V> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<Req, Resp, K, V>>) -> Self {
        Self { inner, shared }
    }
}

impl<S, Req, Resp, K, V> Cache<S, Req, Resp, K, V>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// A handle on the cache: counters and invalidation.
    pub fn handle(&self) -> Handle<K> {
        Handle::new(self.shared.clone())
    }
}

impl<S, Req, Resp, K, V> Service<Req> for Cache<S, Req, Resp, K, V>
where
    S: Service<Req, Response = Resp> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    type Response = Resp;
    type Error = BoxError;
    type Future = ResponseFuture<Resp>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // Take the service that was made ready; leave a clone in its place.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        match (self.shared.hooks.key)(&req) {
            Some(key) => {
                if let Some(absent) = self.shared.reject_unknown(&key) {
                    return ResponseFuture::ready(Ok(absent));
                }
                ResponseFuture::new(Arc::clone(&self.shared).serve(ready, req, key))
            }
            None => {
                self.shared.stats.bypassed.add();
                let fut = ready.call(req);
                ResponseFuture::new(async move { fut.await.map_err(Into::into) })
            }
        }
    }
}

impl<S: Clone, Req, Resp, K, V> Clone for Cache<S, Req, Resp, K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, Req, Resp, K, V> fmt::Debug for Cache<S, Req, Resp, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("inner", &self.inner)
            .field("cache", &self.shared)
            .finish()
    }
}

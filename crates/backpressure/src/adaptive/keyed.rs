//! Per-key adaptive limiters: [`KeyedAdaptiveLimitLayer`],
//! [`KeyedAdaptiveLimit`] and [`KeyedAdaptiveLimitHandle`].

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};

use rampart_core::BoxError;
use rampart_core::keyed::{KeyedConfig, KeyedMap};
use rampart_core::metrics::InstanceLabels;
use tower_layer::Layer;
use tower_service::Service;

use crate::adaptive::config::{AdaptiveLimitConfig, Params};
use crate::adaptive::future::ResponseFuture;
use crate::adaptive::handle::Handle;
use crate::adaptive::shared::Shared;

/// Applies one adaptive concurrency limiter per key to services. Built by
/// [`AdaptiveLimitConfig::build_keyed`].
///
/// The key function runs on every request; each key (a tenant, a route)
/// gets its own limiter with the configured values, created on first use,
/// so one key's slow or failing calls shrink only its own limit. Instances
/// live in a bounded [`KeyedMap`]: at most `max_keys`, and one unused for
/// `idle_timeout` is dropped (its next call starts again from
/// `initial_limit`).
///
/// Under [`Admission::Backpressure`](crate::Admission::Backpressure)
/// `poll_ready` cannot know the key of the next request, so it only
/// forwards the inner service's readiness, and a call over its key's limit
/// waits in its key's line in the response future, however long; bound it
/// with a timeout or prefer [`Admission::Wait`](crate::Admission::Wait).
///
/// Every service the layer makes, and every clone, shares the same map.
pub struct KeyedAdaptiveLimitLayer<K, F> {
    state: Arc<KeyedState<K>>,
    key: Arc<F>,
}

/// A service with one adaptive limiter per key; see
/// [`KeyedAdaptiveLimitLayer`].
pub struct KeyedAdaptiveLimit<S, K, F> {
    inner: S,
    state: Arc<KeyedState<K>>,
    key: Arc<F>,
}

/// A cloneable handle on the limiters of a [`KeyedAdaptiveLimitLayer`].
pub struct KeyedAdaptiveLimitHandle<K> {
    state: Arc<KeyedState<K>>,
}

struct KeyedState<K> {
    name: String,
    params: Params,
    labels: InstanceLabels,
    map: KeyedMap<K, Arc<Shared>>,
}

// === impl KeyedState ===

impl<K> KeyedState<K>
where
    K: Hash + Eq + fmt::Display + Send + Sync + 'static,
{
    fn instance(&self, key: K) -> Arc<Shared> {
        self.map.get_or_build(key, &self.labels, |labels| {
            Arc::new(Shared::new(self.name.clone(), self.params, labels))
        })
    }
}

// === impl KeyedAdaptiveLimitLayer ===

impl<K, F> KeyedAdaptiveLimitLayer<K, F>
where
    K: Hash + Eq + Send + Sync + 'static,
{
    /// `config` and `keys` are validated by the caller.
    pub(crate) fn new(config: AdaptiveLimitConfig, keys: KeyedConfig, key: F) -> Self {
        let state = KeyedState {
            name: config.name_ref().to_owned(),
            params: config.params(),
            labels: InstanceLabels::new(config.name_ref()),
            map: KeyedMap::new(keys),
        };
        Self {
            state: Arc::new(state),
            key: Arc::new(key),
        }
    }
}

impl<K, F> KeyedAdaptiveLimitLayer<K, F> {
    /// A handle on the layer's limiters.
    pub fn handle(&self) -> KeyedAdaptiveLimitHandle<K> {
        KeyedAdaptiveLimitHandle {
            state: self.state.clone(),
        }
    }
}

impl<K, F> Clone for KeyedAdaptiveLimitLayer<K, F> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            key: self.key.clone(),
        }
    }
}

impl<S, K, F> Layer<S> for KeyedAdaptiveLimitLayer<K, F> {
    type Service = KeyedAdaptiveLimit<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedAdaptiveLimit {
            inner,
            state: self.state.clone(),
            key: self.key.clone(),
        }
    }
}

impl<K, F> fmt::Debug for KeyedAdaptiveLimitLayer<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedAdaptiveLimitLayer")
            .field("name", &self.state.name)
            .field("keys", &self.state.map)
            .finish()
    }
}

// === impl KeyedAdaptiveLimit ===

impl<S, K, F> KeyedAdaptiveLimit<S, K, F> {
    /// A handle on the service's limiters.
    pub fn handle(&self) -> KeyedAdaptiveLimitHandle<K> {
        KeyedAdaptiveLimitHandle {
            state: self.state.clone(),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, F> Clone for KeyedAdaptiveLimit<S, K, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            state: self.state.clone(),
            key: self.key.clone(),
        }
    }
}

impl<S, K, F, Req> Service<Req> for KeyedAdaptiveLimit<S, K, F>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    F: Fn(&Req) -> K,
    K: Hash + Eq + fmt::Display + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = self.state.instance((self.key)(&request));
        ResponseFuture::start(&shared, &mut self.inner, request, None)
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for KeyedAdaptiveLimit<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedAdaptiveLimit")
            .field("inner", &self.inner)
            .field("name", &self.state.name)
            .field("keys", &self.state.map)
            .finish()
    }
}

// === impl KeyedAdaptiveLimitHandle ===

impl<K> KeyedAdaptiveLimitHandle<K>
where
    K: Hash + Eq + Send + Sync + 'static,
{
    /// The handle of `key`'s limiter, if it exists.
    pub fn get(&self, key: &K) -> Option<Handle> {
        self.state.map.get(key).map(Handle::new)
    }

    /// Every live key with its limiter's handle.
    pub fn entries(&self) -> Vec<(Arc<K>, Handle)> {
        self.state
            .map
            .entries()
            .into_iter()
            .map(|(key, shared)| (key, Handle::new(shared)))
            .collect()
    }

    /// The number of live limiters (approximate until evictions run).
    pub fn len(&self) -> u64 {
        self.state.map.len()
    }

    /// `true` when no limiter is alive.
    pub fn is_empty(&self) -> bool {
        self.state.map.is_empty()
    }
}

impl<K> Clone for KeyedAdaptiveLimitHandle<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedAdaptiveLimitHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedAdaptiveLimitHandle")
            .field("name", &self.state.name)
            .field("keys", &self.state.map)
            .finish()
    }
}

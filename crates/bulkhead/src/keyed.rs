//! Per-key bulkheads: [`KeyedBulkheadLayer`], [`KeyedBulkhead`] and
//! [`KeyedHandle`].

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};

use rampart_core::error::validate;
use rampart_core::keyed::{KeyedConfig, KeyedMap};
use rampart_core::metrics::InstanceLabels;
use rampart_core::{BoxError, ConfigError};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ReleaseOnBodyEnd;
use crate::config::{BulkheadConfig, Limits, MAX_PERMITS};
use crate::future::ResponseFuture;
use crate::handle::Handle;
use crate::permit::Shared;
use crate::policy::{ReleaseOnResponse, ReleasePolicy};

/// Applies one bulkhead per key to services. Built by
/// [`BulkheadConfig::build_keyed`].
///
/// The key function runs on every request; each key gets its own bulkhead
/// with the configured limits, created on first use, so one busy key (a
/// slow upstream, a noisy tenant) cannot take the permits of the others.
/// Instances live in a bounded [`KeyedMap`]: at most `max_keys` of them, and
/// one unused for `idle_timeout` is dropped. An instance evicted while it
/// still has calls in flight keeps them; the key's next call gets a fresh
/// instance, so size `max_keys` above the number of keys that are busy at
/// once.
///
/// Every service the layer makes shares the same map. Cloning is cheap.
pub struct KeyedBulkheadLayer<K, F, P = ReleaseOnResponse> {
    state: Arc<KeyedState<K>>,
    key: Arc<F>,
    policy: P,
}

/// A service with one bulkhead per key; see [`KeyedBulkheadLayer`].
///
/// Like [`Bulkhead`](crate::Bulkhead), `poll_ready` only forwards the inner
/// service's readiness and the permit of the request's key is taken when
/// the call starts.
pub struct KeyedBulkhead<S, K, F, P = ReleaseOnResponse> {
    inner: S,
    state: Arc<KeyedState<K>>,
    key: Arc<F>,
    policy: P,
}

/// A cloneable handle on the bulkheads of a [`KeyedBulkheadLayer`].
pub struct KeyedHandle<K> {
    state: Arc<KeyedState<K>>,
}

/// The map of instances and what is needed to create one.
struct KeyedState<K> {
    name: String,
    labels: InstanceLabels,
    limits: Limits,
    /// The limit new instances start with; `KeyedHandle` may change it.
    max_concurrent: AtomicUsize,
    map: KeyedMap<K, Arc<Shared>>,
}

// === impl KeyedState ===

impl<K> KeyedState<K>
where
    K: Hash + Eq + fmt::Display + Send + Sync + 'static,
{
    fn instance(&self, key: K) -> Arc<Shared> {
        self.map.get_or_build(key, &self.labels, |labels| {
            let limits = Limits {
                max_concurrent: self.max_concurrent.load(Relaxed),
                ..self.limits
            };
            Arc::new(Shared::new(&self.name, limits, labels))
        })
    }
}

// === impl KeyedBulkheadLayer ===

impl<K, F> KeyedBulkheadLayer<K, F>
where
    K: Hash + Eq + Send + Sync + 'static,
{
    /// `config` and `keys` are validated by the caller.
    pub(crate) fn new(config: BulkheadConfig, keys: KeyedConfig, key: F) -> Self {
        let limits = config.limits();
        let state = KeyedState {
            name: config.name_ref().to_owned(),
            labels: InstanceLabels::new(config.name_ref()),
            limits,
            max_concurrent: AtomicUsize::new(limits.max_concurrent),
            map: KeyedMap::new(keys),
        };
        Self {
            state: Arc::new(state),
            key: Arc::new(key),
            policy: ReleaseOnResponse,
        }
    }
}

impl<K, F, P> KeyedBulkheadLayer<K, F, P> {
    /// A handle on the layer's bulkheads.
    pub fn handle(&self) -> KeyedHandle<K> {
        KeyedHandle {
            state: self.state.clone(),
        }
    }

    /// Keeps each call's permit until its HTTP response body ends; see
    /// [`BulkheadLayer::hold_until_body_end`](crate::BulkheadLayer::hold_until_body_end).
    pub fn hold_until_body_end(self) -> KeyedBulkheadLayer<K, F, ReleaseOnBodyEnd> {
        self.with_release_policy(ReleaseOnBodyEnd)
    }

    /// Uses `policy` to decide when each call's permit is released; see
    /// [`ReleasePolicy`].
    pub fn with_release_policy<Q>(self, policy: Q) -> KeyedBulkheadLayer<K, F, Q> {
        KeyedBulkheadLayer {
            state: self.state,
            key: self.key,
            policy,
        }
    }
}

impl<K, F, P: Clone> Clone for KeyedBulkheadLayer<K, F, P> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            key: self.key.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<S, K, F, P: Clone> Layer<S> for KeyedBulkheadLayer<K, F, P> {
    type Service = KeyedBulkhead<S, K, F, P>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBulkhead {
            inner,
            state: self.state.clone(),
            key: self.key.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<K, F, P> fmt::Debug for KeyedBulkheadLayer<K, F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkheadLayer")
            .field("name", &self.state.name)
            .field("limits", &self.state.limits)
            .field("keys", &self.state.map)
            .finish()
    }
}

// === impl KeyedBulkhead ===

impl<S, K, F, P> KeyedBulkhead<S, K, F, P> {
    /// A handle on the service's bulkheads.
    pub fn handle(&self) -> KeyedHandle<K> {
        KeyedHandle {
            state: self.state.clone(),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, K, F, P, Req> Service<Req> for KeyedBulkhead<S, K, F, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    F: Fn(&Req) -> K,
    K: Hash + Eq + fmt::Display + Send + Sync + 'static,
    P: ReleasePolicy<S::Response> + Clone,
{
    type Response = P::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, P>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = self.state.instance((self.key)(&request));
        ResponseFuture::start(&shared, &mut self.inner, request, self.policy.clone())
    }
}

impl<S: Clone, K, F, P: Clone> Clone for KeyedBulkhead<S, K, F, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            state: self.state.clone(),
            key: self.key.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F, P> fmt::Debug for KeyedBulkhead<S, K, F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkhead")
            .field("inner", &self.inner)
            .field("name", &self.state.name)
            .field("keys", &self.state.map)
            .finish()
    }
}

// === impl KeyedHandle ===

impl<K> KeyedHandle<K>
where
    K: Hash + Eq + Send + Sync + 'static,
{
    /// The handle of `key`'s bulkhead, if it exists now.
    pub fn get(&self, key: &K) -> Option<Handle> {
        self.state.map.get(key).map(Handle::new)
    }

    /// Every live key with its bulkhead's handle.
    pub fn entries(&self) -> Vec<(Arc<K>, Handle)> {
        self.state
            .map
            .entries()
            .into_iter()
            .map(|(k, shared)| (k, Handle::new(shared)))
            .collect()
    }

    /// The number of live keys (approximate while evictions are pending).
    pub fn len(&self) -> u64 {
        self.state.map.len()
    }

    /// `true` when no key has a bulkhead.
    pub fn is_empty(&self) -> bool {
        self.state.map.is_empty()
    }

    /// The limit new keys start with.
    pub fn max_concurrent(&self) -> usize {
        self.state.max_concurrent.load(Relaxed)
    }

    /// Changes the limit of every live key (as
    /// [`Handle::set_max_concurrent`] does) and of keys created from now on.
    /// A key created at the very moment of the call may keep the old limit.
    pub fn set_max_concurrent(&self, max_concurrent: usize) -> Result<(), ConfigError> {
        validate::non_zero("max_concurrent", max_concurrent as u64)?;
        validate::at_most("max_concurrent", max_concurrent as u64, MAX_PERMITS as u64)?;
        self.state.max_concurrent.store(max_concurrent, Relaxed);
        for (_, shared) in self.state.map.entries() {
            shared.set_limit(max_concurrent);
        }
        Ok(())
    }
}

impl<K> Clone for KeyedHandle<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedHandle")
            .field("name", &self.state.name)
            .field("keys", &self.state.map)
            .finish()
    }
}

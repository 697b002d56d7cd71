//! Per-key rate limiters: [`KeyedRateLimitLayer`], [`KeyedRateLimit`] and
//! [`KeyedRateLimitHandle`].

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use rampart_core::keyed::{KeyedConfig, KeyedMap};
use rampart_core::metrics::InstanceLabels;
use rampart_core::{BoxError, ConfigError};
use tower_layer::Layer;
use tower_service::Service;

use crate::rate::config::{RateLimitConfig, interval};
use crate::rate::future::ResponseFuture;
use crate::rate::handle::Handle;
use crate::rate::shared::Shared;
use rampart_core::clock::nanos;

/// Applies one rate limiter per key to services. Built by
/// [`RateLimitConfig::build_keyed`].
///
/// The key function runs on every request; each key gets its own limiter
/// with the configured rate, created on first use, so one busy key cannot
/// spend the budget of the others. Instances live in a bounded
/// [`KeyedMap`]: at most `max_keys`, and one unused for `idle_timeout` is
/// dropped (its next call starts with a full burst).
///
/// Under [`Admission::Backpressure`](crate::Admission::Backpressure)
/// `poll_ready` cannot know the key of the next request, so it only
/// forwards the inner service's readiness and a call without a token waits
/// for its slot in the response future, however long; bound it with a
/// timeout or prefer [`Admission::Wait`](crate::Admission::Wait).
///
/// Every service the layer makes, and every clone, shares the same map.
pub struct KeyedRateLimitLayer<K, F> {
    state: Arc<KeyedState<K>>,
    key: Arc<F>,
}

/// A service with one rate limiter per key; see [`KeyedRateLimitLayer`].
pub struct KeyedRateLimit<S, K, F> {
    inner: S,
    state: Arc<KeyedState<K>>,
    key: Arc<F>,
}

/// A cloneable handle on the limiters of a [`KeyedRateLimitLayer`].
pub struct KeyedRateLimitHandle<K> {
    state: Arc<KeyedState<K>>,
}

struct KeyedState<K> {
    config: RateLimitConfig,
    labels: InstanceLabels,
    /// The spacing new instances start with, in nanoseconds.
    interval: AtomicU64,
    map: KeyedMap<K, Arc<Shared>>,
}

// === impl KeyedState ===

impl<K> KeyedState<K>
where
    K: Hash + Eq + fmt::Display + Send + Sync + 'static,
{
    fn instance(&self, key: K) -> Arc<Shared> {
        self.map.get_or_build(key, &self.labels, |labels| {
            let shared = self.config.shared(labels);
            shared.set_interval(Duration::from_nanos(self.interval.load(Relaxed)));
            Arc::new(shared)
        })
    }
}

// === impl KeyedRateLimitLayer ===

impl<K, F> KeyedRateLimitLayer<K, F>
where
    K: Hash + Eq + Send + Sync + 'static,
{
    /// `config` and `keys` are validated by the caller.
    pub(crate) fn new(config: RateLimitConfig, keys: KeyedConfig, key: F) -> Self {
        let labels = InstanceLabels::new(config.name_ref());
        let state = KeyedState {
            labels,
            interval: AtomicU64::new(nanos(config.spacing())),
            config,
            map: KeyedMap::new(keys),
        };
        Self {
            state: Arc::new(state),
            key: Arc::new(key),
        }
    }
}

impl<K, F> KeyedRateLimitLayer<K, F> {
    /// A handle on the layer's limiters.
    pub fn handle(&self) -> KeyedRateLimitHandle<K> {
        KeyedRateLimitHandle {
            state: self.state.clone(),
        }
    }
}

impl<K, F> Clone for KeyedRateLimitLayer<K, F> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            key: self.key.clone(),
        }
    }
}

impl<S, K, F> Layer<S> for KeyedRateLimitLayer<K, F> {
    type Service = KeyedRateLimit<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedRateLimit {
            inner,
            state: self.state.clone(),
            key: self.key.clone(),
        }
    }
}

impl<K, F> fmt::Debug for KeyedRateLimitLayer<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimitLayer")
            .field("keys", &self.state.map)
            .finish()
    }
}

// === impl KeyedRateLimit ===

impl<S, K, F> KeyedRateLimit<S, K, F> {
    /// A handle on the service's limiters.
    pub fn handle(&self) -> KeyedRateLimitHandle<K> {
        KeyedRateLimitHandle {
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

impl<S: Clone, K, F> Clone for KeyedRateLimit<S, K, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            state: self.state.clone(),
            key: self.key.clone(),
        }
    }
}

impl<S, K, F, Req> Service<Req> for KeyedRateLimit<S, K, F>
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
        ResponseFuture::start(&shared, &mut self.inner, request)
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for KeyedRateLimit<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimit")
            .field("inner", &self.inner)
            .field("keys", &self.state.map)
            .finish()
    }
}

// === impl KeyedRateLimitHandle ===

impl<K> KeyedRateLimitHandle<K>
where
    K: Hash + Eq + Send + Sync + 'static,
{
    /// The handle of `key`'s limiter, if it exists.
    pub fn get(&self, key: &K) -> Option<Handle> {
        self.state.map.get(key).map(Handle::new)
    }

    /// The number of live limiters (approximate until evictions run).
    pub fn len(&self) -> u64 {
        self.state.map.len()
    }

    /// `true` when no limiter is alive.
    pub fn is_empty(&self) -> bool {
        self.state.map.is_empty()
    }

    /// Changes the rate of every live limiter and of those created later;
    /// see [`Handle::set_rate`].
    pub fn set_rate(&self, rate: u32, period: Duration) -> Result<(), ConfigError> {
        let spacing = interval(rate, period)?;
        self.state.interval.store(nanos(spacing), Relaxed);
        for (_, shared) in self.state.map.entries() {
            shared.set_interval(spacing);
        }
        Ok(())
    }
}

impl<K> Clone for KeyedRateLimitHandle<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedRateLimitHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimitHandle")
            .field("keys", &self.state.map)
            .finish()
    }
}

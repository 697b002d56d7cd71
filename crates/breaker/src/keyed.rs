//! One breaker per key: per upstream authority, route or user.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};

use rampart_core::classify::ResultClassifier;
use rampart_core::keyed::{KeyedConfig, KeyedMap};
use rampart_core::metrics::InstanceLabels;
use rampart_core::{BoxError, Classify, ConfigError};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{BreakerConfig, RejectMode};
use crate::fallback::{Fallback, FallbackFn, NoFallback};
use crate::future::ResponseFuture;
use crate::handle::Handle;
use crate::shared::Shared;
use crate::sync::{Mutex, lock};

/// Wraps services in one breaker per key, the key computed from each
/// request by `KF: Fn(&Req) -> K`.
///
/// Breakers are created on first use with the layer's configuration and
/// live in a bounded map ([`KeyedConfig`]: at most `max_keys`, dropped
/// after `idle_timeout` unused; a dropped breaker forgets its history). A
/// keyed breaker always fails fast: the key is known only when the call
/// is made, so `poll_ready` cannot wait for one.
///
/// ```
/// use rampart_breaker::BreakerConfig;
/// use rampart_core::keyed::KeyedConfig;
///
/// let layer = BreakerConfig::new()
///     .build_keyed(
///         |req: &http::Request<()>| req.uri().authority().map(|a| a.to_string()).unwrap_or_default(),
///         KeyedConfig::default(),
///     )
///     .unwrap();
/// # let _ = layer;
/// ```
pub struct KeyedBreakerLayer<K, KF, C = ResultClassifier, F = NoFallback> {
    inner: Arc<KeyedInner<K, KF>>,
    classifier: C,
    fallback: F,
}

struct KeyedInner<K, KF> {
    /// The configuration new breakers are built with; changed by
    /// [`KeyedHandle::reconfigure`].
    config: Mutex<BreakerConfig>,
    labels: InstanceLabels,
    map: KeyedMap<K, Arc<Shared>>,
    key_fn: KF,
}

impl BreakerConfig {
    /// Checks the configuration and builds a layer with one breaker per
    /// key.
    pub fn build_keyed<Req, K, KF>(
        self,
        key_fn: KF,
        keys: KeyedConfig,
    ) -> Result<KeyedBreakerLayer<K, KF>, ConfigError>
    where
        K: Hash + Eq + Send + Sync + 'static,
        KF: Fn(&Req) -> K,
    {
        self.validate()?;
        keys.validate()?;
        if self.reject_mode != RejectMode::FailFast {
            return Err(ConfigError::new(
                "reject_mode",
                "a keyed breaker can only fail fast: the key is known only when the call is made",
            ));
        }
        Ok(KeyedBreakerLayer {
            inner: Arc::new(KeyedInner {
                labels: InstanceLabels::new(self.name.clone()),
                config: Mutex::new(self),
                map: KeyedMap::new(keys),
                key_fn,
            }),
            classifier: ResultClassifier,
            fallback: NoFallback,
        })
    }
}

impl<K, KF, C, F> KeyedBreakerLayer<K, KF, C, F> {
    /// Judges outcomes with `classifier`.
    pub fn classifier<C2>(self, classifier: C2) -> KeyedBreakerLayer<K, KF, C2, F> {
        KeyedBreakerLayer {
            inner: self.inner,
            classifier,
            fallback: self.fallback,
        }
    }

    /// Answers refused calls with `f(request, refusal)` instead of failing.
    pub fn fallback<G>(self, f: G) -> KeyedBreakerLayer<K, KF, C, FallbackFn<G>> {
        KeyedBreakerLayer {
            inner: self.inner,
            classifier: self.classifier,
            fallback: FallbackFn(f),
        }
    }

    /// A handle on every keyed breaker.
    pub fn handle(&self) -> KeyedHandle<K>
    where
        K: Send + Sync + 'static,
        KF: Send + Sync + 'static,
    {
        KeyedHandle {
            map: self.inner.map.clone(),
            config: Arc::clone(&self.inner) as Arc<dyn KeyedConfigSlot>,
        }
    }
}

impl<K, KF, C: Clone, F: Clone> Clone for KeyedBreakerLayer<K, KF, C, F> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            classifier: self.classifier.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<K, KF, C, F> fmt::Debug for KeyedBreakerLayer<K, KF, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakerLayer")
            .field("config", &*lock(&self.inner.config))
            .field("breakers", &self.inner.map)
            .finish()
    }
}

impl<S, K, KF, C: Clone, F: Clone> Layer<S> for KeyedBreakerLayer<K, KF, C, F> {
    type Service = KeyedBreaker<S, K, KF, C, F>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBreaker {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service guarded by one breaker per key; made by [`KeyedBreakerLayer`].
pub struct KeyedBreaker<S, K, KF, C, F> {
    inner: S,
    layer: KeyedBreakerLayer<K, KF, C, F>,
}

impl<S: Clone, K, KF, C: Clone, F: Clone> Clone for KeyedBreaker<S, K, KF, C, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, K, KF, C, F> fmt::Debug for KeyedBreaker<S, K, KF, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreaker")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, K, KF, C, F, Req> Service<Req> for KeyedBreaker<S, K, KF, C, F>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + fmt::Display + Send + Sync + 'static,
    KF: Fn(&Req) -> K,
    C: Classify<S::Response, S::Error> + Clone,
    F: Fallback<Req, S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let keyed = &self.layer.inner;
        let key = (keyed.key_fn)(&req);
        let shared = keyed.map.get_or_build(key, &keyed.labels, |labels| {
            Shared::new(&lock(&keyed.config), labels.clone())
        });
        let permit = shared.acquire();
        ResponseFuture::start(
            &shared,
            permit,
            &mut self.inner,
            req,
            &self.layer.classifier,
            &self.layer.fallback,
        )
    }
}

/// A handle on the breakers of a [`KeyedBreakerLayer`].
#[derive(Clone)]
pub struct KeyedHandle<K> {
    map: KeyedMap<K, Arc<Shared>>,
    config: Arc<dyn KeyedConfigSlot>,
}

/// The layer's configuration, reached from a handle without its key
/// function's type.
trait KeyedConfigSlot: Send + Sync {
    fn slot(&self) -> &Mutex<BreakerConfig>;
}

impl<K, KF: Send + Sync> KeyedConfigSlot for KeyedInner<K, KF>
where
    K: Send + Sync + 'static,
{
    fn slot(&self) -> &Mutex<BreakerConfig> {
        &self.config
    }
}

impl<K> fmt::Debug for KeyedHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedHandle")
            .field("breakers", &self.map)
            .finish()
    }
}

impl<K> KeyedHandle<K>
where
    K: Hash + Eq + Send + Sync + 'static,
{
    /// The breaker for `key`, if it exists.
    pub fn get(&self, key: &K) -> Option<Handle> {
        self.map.get(key).map(Handle::new)
    }

    /// Every live breaker with its key.
    pub fn entries(&self) -> Vec<(Arc<K>, Handle)> {
        self.map
            .entries()
            .into_iter()
            .map(|(k, s)| (k, Handle::new(s)))
            .collect()
    }

    /// Applies `config`'s thresholds to every live breaker and to those
    /// created from now on (see [`Handle::reconfigure`] for what may
    /// change). Nothing changes if any breaker refuses it.
    pub fn reconfigure(&self, config: &BreakerConfig) -> Result<(), ConfigError> {
        let mut current = lock(self.config.slot());
        current.check_live_change(config)?;
        for (_, shared) in self.map.entries() {
            Handle::new(shared).reconfigure(config)?;
        }
        *current = config.clone();
        Ok(())
    }
}

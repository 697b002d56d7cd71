//! The breaker layer.

use std::fmt;
use std::sync::Arc;

use rampart_core::classify::ResultClassifier;
use rampart_core::metrics::InstanceLabels;
use tower_layer::Layer;

use crate::config::BreakerConfig;
use crate::fallback::{FallbackFn, NoFallback};
use crate::handle::Handle;
use crate::service::Breaker;
use crate::shared::Shared;

/// Wraps services in one circuit breaker.
///
/// Every service this layer wraps, and every clone of them, shares the one
/// breaker the layer was built with (so an axum `Router::layer`, which
/// clones per route, still has one breaker). For one breaker per upstream,
/// route or user, see [`KeyedBreakerLayer`](crate::KeyedBreakerLayer).
///
/// Built by [`BreakerConfig::build`]; `C` classifies outcomes (default:
/// `Err` is a failure), `F` answers refused calls (default: the
/// [`BreakerOpen`](crate::BreakerOpen) error).
#[derive(Clone)]
pub struct BreakerLayer<C = ResultClassifier, F = NoFallback> {
    pub(crate) shared: Arc<Shared>,
    classifier: C,
    fallback: F,
}

impl BreakerLayer {
    /// A configuration to build a layer from, with production defaults.
    pub fn builder() -> BreakerConfig {
        BreakerConfig::default()
    }

    pub(crate) fn from_config(config: &BreakerConfig) -> Self {
        let labels = InstanceLabels::new(config.name.clone());
        Self {
            shared: Shared::new(config, labels),
            classifier: ResultClassifier,
            fallback: NoFallback,
        }
    }
}

impl<C, F> BreakerLayer<C, F> {
    /// Judges outcomes with `classifier`, for example
    /// [`HttpClassifier`](rampart_core::classify::HttpClassifier) so that
    /// 5xx and 429 responses count as failures.
    pub fn classifier<C2>(self, classifier: C2) -> BreakerLayer<C2, F> {
        BreakerLayer {
            shared: self.shared,
            classifier,
            fallback: self.fallback,
        }
    }

    /// Answers refused calls with `f(request, refusal)` instead of failing.
    pub fn fallback<G>(self, f: G) -> BreakerLayer<C, FallbackFn<G>> {
        BreakerLayer {
            shared: self.shared,
            classifier: self.classifier,
            fallback: FallbackFn(f),
        }
    }

    /// A handle on the breaker: state, metrics, subscription, overrides.
    pub fn handle(&self) -> Handle {
        Handle::new(Arc::clone(&self.shared))
    }
}

impl<S, C: Clone, F: Clone> Layer<S> for BreakerLayer<C, F> {
    type Service = Breaker<S, C, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker::new(
            inner,
            Arc::clone(&self.shared),
            self.classifier.clone(),
            self.fallback.clone(),
        )
    }
}

impl<C, F> fmt::Debug for BreakerLayer<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("name", &self.shared.name())
            .field("state", &self.shared.core.state())
            .finish()
    }
}

//! [`RateLimitLayer`].

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::rate::handle::Handle;
use crate::rate::service::RateLimit;
use crate::rate::shared::Shared;

/// Applies one GCRA rate limiter to services. Built by
/// [`RateLimitConfig::build`](crate::RateLimitConfig::build).
///
/// Every service the layer makes, and every clone of the layer, shares one
/// limiter: the rate is a budget for all of them together.
#[derive(Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

impl RateLimitLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// A handle on the layer's limiter.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.shared.clone())
    }
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.shared)
            .finish()
    }
}

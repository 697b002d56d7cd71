//! [`BulkheadLayer`]: the layer.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::body::ReleaseOnBodyEnd;
use crate::handle::Handle;
use crate::permit::Shared;
use crate::policy::ReleaseOnResponse;
use crate::service::Bulkhead;

/// Applies a bulkhead to services. Built by
/// [`BulkheadConfig::build`](crate::BulkheadConfig::build).
///
/// The layer owns one bulkhead: every service it makes (and every clone of
/// those) shares the same permits, so one layer applied to every route of a
/// router bounds them together. Build another layer for a separate
/// bulkhead. Cloning the layer is cheap and shares the bulkhead too.
#[derive(Clone)]
pub struct BulkheadLayer<P = ReleaseOnResponse> {
    shared: Arc<Shared>,
    policy: P,
}

impl BulkheadLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            policy: ReleaseOnResponse,
        }
    }
}

impl<P> BulkheadLayer<P> {
    /// A handle on this layer's bulkhead: counters and live resizing.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }

    /// Keeps each call's permit until its HTTP response body ends (or is
    /// dropped), not just until the response head arrives. The services'
    /// response becomes `http::Response<PermitBody<B>>`. Use it in front of
    /// streaming handlers, where the work goes on while the body streams.
    pub fn hold_until_body_end(self) -> BulkheadLayer<ReleaseOnBodyEnd> {
        self.with_release_policy(ReleaseOnBodyEnd)
    }

    /// Uses `policy` to decide when each call's permit is released; see
    /// [`ReleasePolicy`](crate::ReleasePolicy).
    pub fn with_release_policy<Q>(self, policy: Q) -> BulkheadLayer<Q> {
        BulkheadLayer {
            shared: self.shared,
            policy,
        }
    }
}

impl<S, P: Clone> Layer<S> for BulkheadLayer<P> {
    type Service = Bulkhead<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::new(inner, self.shared.clone(), self.policy.clone())
    }
}

impl<P> fmt::Debug for BulkheadLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("bulkhead", &self.shared)
            .field("policy", &std::any::type_name::<P>())
            .finish()
    }
}

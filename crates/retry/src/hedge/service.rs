//! The hedging service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use rampart_core::{BoxError, Classify};
use tower_service::Service;

use crate::hedge::future::HedgeFuture;
use crate::hedge::layer::Shared;
use crate::policy::ReplayPolicy;

/// A service whose slow calls are hedged; made by
/// [`HedgeLayer`](crate::HedgeLayer).
///
/// `poll_ready` forwards the inner service's readiness and the first
/// attempt goes to the service driven ready. A call that may be hedged
/// keeps a clone of the request and of the inner service; the clone is
/// driven ready only when a hedge is due, and while it is not ready the
/// first attempt carries on alone.
pub struct Hedge<S, C, P> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
    policy: P,
}

impl<S, C, P> Hedge<S, C, P> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, classifier: C, policy: P) -> Self {
        Self {
            inner,
            shared,
            classifier,
            policy,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, C, P, Req> Service<Req> for Hedge<S, C, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
    P: ReplayPolicy<Req>,
    Req: Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = HedgeFuture<S, Req, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let replayable = self.policy.is_replayable(&req);
        HedgeFuture::start(
            &self.shared,
            &mut self.inner,
            req,
            replayable,
            self.classifier.clone(),
        )
    }
}

impl<S: Clone, C: Clone, P: Clone> Clone for Hedge<S, C, P> {
    fn clone(&self) -> Self {
        Self::new(
            self.inner.clone(),
            Arc::clone(&self.shared),
            self.classifier.clone(),
            self.policy.clone(),
        )
    }
}

impl<S: fmt::Debug, C, P> fmt::Debug for Hedge<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish()
    }
}

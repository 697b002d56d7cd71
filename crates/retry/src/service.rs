//! The retry service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use rampart_core::{BoxError, Classify};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::Shared;
use crate::policy::ReplayPolicy;

/// A service whose failed calls are retried; made by
/// [`RetryLayer`](crate::RetryLayer).
///
/// `poll_ready` forwards the inner service's readiness. Each call keeps a
/// clone of the request (when it may be retried at all) and of the inner
/// service, which it drives to readiness again before every retry.
pub struct Retry<S, C, P> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
    policy: P,
}

impl<S, C, P> Retry<S, C, P> {
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

impl<S, C, P, Req> Service<Req> for Retry<S, C, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
    P: ReplayPolicy<Req> + Clone,
    Req: Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // Call the service that was driven ready; keep a fresh clone here.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let replayable = self.policy.is_replayable(&req);
        let overrides = self.policy.overrides(&req);
        ResponseFuture::start(
            &self.shared,
            ready,
            req,
            replayable,
            overrides,
            self.classifier.clone(),
            self.policy.clone(),
        )
    }
}

impl<S: Clone, C: Clone, P: Clone> Clone for Retry<S, C, P> {
    fn clone(&self) -> Self {
        Self::new(
            self.inner.clone(),
            Arc::clone(&self.shared),
            self.classifier.clone(),
            self.policy.clone(),
        )
    }
}

impl<S: fmt::Debug, C, P> fmt::Debug for Retry<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish()
    }
}

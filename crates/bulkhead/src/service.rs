//! [`Bulkhead`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use rampart_core::BoxError;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::handle::Handle;
use crate::permit::Shared;
use crate::policy::{ReleaseOnResponse, ReleasePolicy};

/// Bounds the calls in flight to an inner service, with a bounded wait for
/// a permit. Made by [`BulkheadLayer`](crate::BulkheadLayer).
///
/// `poll_ready` only forwards the inner service's readiness: an idle client
/// holds no permit. The permit is taken when the call starts and released
/// when its response future completes or is dropped (or later, as the
/// [`ReleasePolicy`] `P` decides). Clones share the bulkhead.
///
/// The inner service must be `Clone`: a call that waits for a permit takes
/// the readied service along and leaves a clone in its place.
#[derive(Clone)]
pub struct Bulkhead<S, P = ReleaseOnResponse> {
    inner: S,
    shared: Arc<Shared>,
    policy: P,
}

impl<S, P> Bulkhead<S, P> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, policy: P) -> Self {
        Self {
            inner,
            shared,
            policy,
        }
    }

    /// A handle on this service's bulkhead.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
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

impl<S, Req, P> Service<Req> for Bulkhead<S, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
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
        ResponseFuture::start(&self.shared, &mut self.inner, request, self.policy.clone())
    }
}

impl<S: fmt::Debug, P> fmt::Debug for Bulkhead<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("bulkhead", &self.shared)
            .finish()
    }
}

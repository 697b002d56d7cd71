//! [`AdaptiveLimitLayer`] and [`AdaptiveLimit`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rampart_core::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use crate::adaptive::future::ResponseFuture;
use crate::adaptive::handle::Handle;
use crate::adaptive::shared::{Permit, Shared, Waiting};
use crate::admission::Admission;

/// Applies one adaptive concurrency limit to services. Built by
/// [`AdaptiveLimitConfig::build`](crate::AdaptiveLimitConfig::build).
///
/// Every service the layer makes, and every clone of the layer, shares
/// one limit.
#[derive(Clone)]
pub struct AdaptiveLimitLayer {
    shared: Arc<Shared>,
}

impl AdaptiveLimitLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// A handle on the layer's limiter.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }
}

impl<S> Layer<S> for AdaptiveLimitLayer {
    type Service = AdaptiveLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveLimit::new(inner, self.shared.clone())
    }
}

impl fmt::Debug for AdaptiveLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitLayer")
            .field("limiter", &self.shared)
            .finish()
    }
}

/// Bounds the calls in flight to an inner service by a limit that adapts
/// to the inner service's latency and errors. Made by
/// [`AdaptiveLimitLayer`].
///
/// The permit is taken when the call starts and released when its
/// response future completes or is dropped; an idle client holds nothing.
/// Under [`Admission::Backpressure`] `poll_ready` returns `Pending` while
/// the limit is reached (or others wait already) and takes its place in
/// line: permits are handed to waiting callers in arrival order, and the
/// permit handed to this service in `poll_ready` is held for its next
/// `call` (dropping the service passes it on). Clones share the limiter
/// but not a place in line or a permit.
///
/// The inner service must be `Clone`: a call that waits for a permit takes
/// the readied service along and leaves a clone in its place.
pub struct AdaptiveLimit<S> {
    inner: S,
    shared: Arc<Shared>,
    /// Under `Backpressure`: the place in line while `poll_ready` waits.
    waiting: Option<Waiting>,
    /// Under `Backpressure`: the permit handed over while waiting, kept for
    /// the next call.
    reserved: Option<Permit>,
}

impl<S> AdaptiveLimit<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            waiting: None,
            reserved: None,
        }
    }

    /// A handle on this service's limiter.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
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

impl<S: Clone> Clone for AdaptiveLimit<S> {
    fn clone(&self) -> Self {
        // The clone has not waited for anything: no place, no permit.
        Self::new(self.inner.clone(), self.shared.clone())
    }
}

impl<S> AdaptiveLimit<S> {
    /// Under `Backpressure`: ready at once when a newcomer would be
    /// admitted now (taking nothing: `call` takes the permit), otherwise
    /// once a permit was handed to this service in line, kept for `call`.
    fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.reserved.is_some() {
            return Poll::Ready(());
        }
        let waiting = match &mut self.waiting {
            Some(waiting) => waiting,
            None if self.shared.has_room() => return Poll::Ready(()),
            None => match self.shared.acquire_or_wait() {
                Ok(permit) => {
                    self.reserved = Some(permit);
                    return Poll::Ready(());
                }
                Err(waiting) => self.waiting.insert(waiting),
            },
        };
        let permit = ready!(waiting.poll_permit(cx));
        self.waiting = None;
        self.reserved = Some(permit);
        Poll::Ready(())
    }
}

impl<S, Req> Service<Req> for AdaptiveLimit<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.shared.params.admission == Admission::Backpressure {
            ready!(self.poll_turn(cx));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture::start(&self.shared, &mut self.inner, request, self.reserved.take())
    }
}

impl<S: fmt::Debug> fmt::Debug for AdaptiveLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.shared)
            .finish()
    }
}

//! [`RateLimit`]: the service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rampart_core::BoxError;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::admission::Admission;
use crate::rate::future::ResponseFuture;
use crate::rate::handle::Handle;
use crate::rate::shared::Shared;

/// Limits the rate of calls to an inner service with GCRA. Made by
/// [`RateLimitLayer`](crate::RateLimitLayer).
///
/// The token is taken when the call starts, never in `poll_ready`, so an
/// idle client holds nothing. Under [`Admission::Backpressure`]
/// `poll_ready` returns `Pending` until a token is due and a timer wakes
/// the task exactly then. Clones share the limiter.
///
/// The inner service must be `Clone`: a call that waits for its slot takes
/// the readied service along and leaves a clone in its place.
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
    /// The backpressure timer; boxed so the service stays small, kept so
    /// that it is allocated once.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S> RateLimit<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            sleep: None,
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

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// `Ready` once a token is due now; otherwise arms the timer for the
    /// moment it is.
    fn poll_token(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let wait = self.shared.gcra.wait_time();
            if wait.is_zero() {
                return Poll::Ready(());
            }
            let deadline = Instant::now() + wait;
            let sleep = match &mut self.sleep {
                Some(sleep) => {
                    sleep.as_mut().reset(deadline);
                    sleep
                }
                None => self
                    .sleep
                    .insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            ready!(sleep.as_mut().poll(cx));
        }
    }
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        // The clone has not waited for anything: no timer.
        Self::new(self.inner.clone(), self.shared.clone())
    }
}

impl<S, Req> Service<Req> for RateLimit<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.shared.admission() == Admission::Backpressure {
            ready!(self.poll_token(cx));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture::start(&self.shared, &mut self.inner, request)
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.shared)
            .finish()
    }
}

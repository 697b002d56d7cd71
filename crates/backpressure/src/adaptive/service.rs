//! [`AdaptiveLimitLayer`] and [`AdaptiveLimit`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rampart_core::BoxError;
use tokio::sync::futures::OwnedNotified;
use tower_layer::Layer;
use tower_service::Service;

use crate::adaptive::future::ResponseFuture;
use crate::adaptive::handle::Handle;
use crate::adaptive::shared::Shared;
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
        AdaptiveLimit {
            inner,
            shared: self.shared.clone(),
            notified: None,
        }
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
/// to the inner service's latency and errors (AIMD). Made by
/// [`AdaptiveLimitLayer`].
///
/// The permit is taken when the call starts and released when its
/// response future completes or is dropped; an idle client holds nothing.
/// Under [`Admission::Backpressure`] `poll_ready` returns `Pending` while
/// the limit is reached and is woken when a call completes. Clones share
/// the limiter.
///
/// The inner service must be `Clone`: a call that waits for a permit takes
/// the readied service along and leaves a clone in its place.
pub struct AdaptiveLimit<S> {
    inner: S,
    shared: Arc<Shared>,
    notified: Option<Pin<Box<OwnedNotified>>>,
}

impl<S> AdaptiveLimit<S> {
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
        // The clone has not waited for anything: no wake-up.
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            notified: None,
        }
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
            loop {
                if self.shared.has_room() {
                    self.notified = None;
                    break;
                }
                let shared = &self.shared;
                let notified = self
                    .notified
                    .get_or_insert_with(|| Box::pin(shared.freed.clone().notified_owned()));
                // Registered before the second look, so no wake-up is lost.
                notified.as_mut().enable();
                if shared.has_room() {
                    self.notified = None;
                    break;
                }
                ready!(notified.as_mut().poll(cx));
                self.notified = None;
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture::start(&self.shared, &mut self.inner, request)
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

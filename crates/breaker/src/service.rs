//! The breaker service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rampart_core::{BoxError, Classify};
use tokio::sync::futures::OwnedNotified;
use tokio::time::Sleep;
use tower_service::Service;

use crate::config::RejectMode;
use crate::core::{Permit, Verdict};
use crate::fallback::Fallback;
use crate::future::{ResponseFuture, UNTIMED};
use crate::shared::Shared;

/// A service guarded by a circuit breaker; made by
/// [`BreakerLayer`](crate::BreakerLayer).
///
/// In [`RejectMode::FailFast`] (the default) `poll_ready` forwards the
/// inner service's readiness and a refused call fails at once. In
/// [`RejectMode::Backpressure`] `poll_ready` takes the admission: it
/// returns `Pending` while the breaker is open and wakes when a trial call
/// is allowed (a timer for the open duration, a notification when a
/// half-open trial slot comes free). An admission taken by `poll_ready` and
/// never used is released when the service is dropped.
pub struct Breaker<S, C, F> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
    fallback: F,
    reserved: Option<Permit>,
    wait: Option<Wait>,
}

struct Wait {
    notified: Pin<Box<OwnedNotified>>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S, C, F> Breaker<S, C, F> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, classifier: C, fallback: F) -> Self {
        Self {
            inner,
            shared,
            classifier,
            fallback,
            reserved: None,
            wait: None,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A handle on this service's breaker.
    pub fn handle(&self) -> crate::Handle {
        crate::Handle::new(Arc::clone(&self.shared))
    }

    /// Takes an admission, or arranges a wake-up for when one may be had.
    fn poll_admission(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            // Register for notifications before looking, so a change made
            // between the look and the wait is not missed.
            let wait = self.wait.get_or_insert_with(|| Wait {
                notified: Box::pin(Arc::clone(&self.shared.notify).notified_owned()),
                sleep: None,
            });
            match self.shared.acquire_slow() {
                Ok(permit) => {
                    self.reserved = Some(permit);
                    self.wait = None;
                    return Poll::Ready(());
                }
                Err(open) => {
                    if let Some(d) = open.retry_in() {
                        let deadline = tokio::time::Instant::now() + d;
                        match &mut wait.sleep {
                            Some(s) => s.as_mut().reset(deadline),
                            None => wait.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                        }
                    }
                    let woke = wait.notified.as_mut().poll(cx).is_ready()
                        | wait
                            .sleep
                            .as_mut()
                            .is_some_and(|s| s.as_mut().poll(cx).is_ready());
                    if !woke {
                        return Poll::Pending;
                    }
                    self.wait = None;
                }
            }
        }
    }
}

impl<S, C, F, Req> Service<Req> for Breaker<S, C, F>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
    F: Fallback<Req, S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.shared.mode == RejectMode::Backpressure
            && self.reserved.is_none()
            && self.poll_admission(cx).is_pending()
        {
            return Poll::Pending;
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let permit = match self.reserved.take() {
            Some(permit) => Ok(permit),
            None => self.shared.acquire(),
        };
        ResponseFuture::start(
            &self.shared,
            permit,
            &mut self.inner,
            req,
            &self.classifier,
            &self.fallback,
        )
    }
}

impl<S: Clone, C: Clone, F: Clone> Clone for Breaker<S, C, F> {
    /// A clone shares the breaker but not an admission reserved by
    /// `poll_ready`: it must become ready on its own.
    fn clone(&self) -> Self {
        Self::new(
            self.inner.clone(),
            Arc::clone(&self.shared),
            self.classifier.clone(),
            self.fallback.clone(),
        )
    }
}

impl<S, C, F> Drop for Breaker<S, C, F> {
    fn drop(&mut self) {
        if let Some(permit) = self.reserved.take() {
            self.shared.record(permit, Verdict::Ignored, UNTIMED);
        }
    }
}

impl<S: fmt::Debug, C, F> fmt::Debug for Breaker<S, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("inner", &self.inner)
            .field("state", &self.shared.core.state())
            .field("reserved", &self.reserved.is_some())
            .finish()
    }
}

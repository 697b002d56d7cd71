//! The breaker's response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use rampart_core::{BoxError, Classify, Outcome};
use tower_service::Service;

use crate::core::{Permit, Verdict};
use crate::fallback::Fallback;
use crate::shared::Shared;

pin_project! {
    /// The future of a call through a breaker: records the call's outcome
    /// when it completes, and releases its admission if dropped first.
    pub struct ResponseFuture<Fut, C, T> {
        #[pin]
        kind: Kind<Fut, T>,
        classifier: C,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<Fut, T> {
        Called { #[pin] fut: Fut, guard: Option<Guard> },
        Answered { result: Option<Result<T, BoxError>> },
    }
}

impl<Fut, C, T> ResponseFuture<Fut, C, T> {
    /// Admits or refuses a call: calls `inner` with `permit`, or answers
    /// from `fallback`.
    #[inline]
    pub(crate) fn start<S, Req, F>(
        shared: &Arc<Shared>,
        permit: Result<Permit, crate::BreakerOpen>,
        inner: &mut S,
        req: Req,
        classifier: &C,
        fallback: &F,
    ) -> Self
    where
        S: Service<Req, Future = Fut, Response = T>,
        C: Clone,
        F: Fallback<Req, T>,
    {
        match permit {
            Ok(permit) => {
                let started = if shared.core.times_calls() {
                    shared.now()
                } else {
                    UNTIMED
                };
                let guard = Guard {
                    shared: Arc::clone(shared),
                    permit: Some(permit),
                    started,
                };
                Self {
                    kind: Kind::Called {
                        fut: inner.call(req),
                        guard: Some(guard),
                    },
                    classifier: classifier.clone(),
                }
            }
            Err(open) => Self {
                kind: Kind::Answered {
                    result: Some(fallback.fallback(req, open)),
                },
                classifier: classifier.clone(),
            },
        }
    }
}

impl<Fut, C, T, E> Future for ResponseFuture<Fut, C, T>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Called { fut, guard } => {
                let result = ready!(fut.poll(cx));
                if let Some(guard) = guard.take() {
                    let verdict = match this.classifier.classify(&result).outcome {
                        Outcome::Success => Verdict::Success,
                        Outcome::Failure => Verdict::Failure,
                        Outcome::Ignored => Verdict::Ignored,
                    };
                    guard.finish(verdict);
                }
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Answered { result } => Poll::Ready(
                result
                    .take()
                    .expect("ResponseFuture polled after completion"),
            ),
        }
    }
}

impl<Fut, C, T> fmt::Debug for ResponseFuture<Fut, C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let admitted = matches!(self.kind, Kind::Called { .. });
        f.debug_struct("ResponseFuture")
            .field("admitted", &admitted)
            .finish()
    }
}

// === impl Guard ===

/// Holds a call's admission until its outcome is recorded. Dropped early
/// (the caller gave up) the call counts as ignored and a half-open trial
/// slot is freed; dropped while unwinding from a panic in the inner
/// service, it counts as a failure.
#[derive(Debug)]
pub(crate) struct Guard {
    shared: Arc<Shared>,
    permit: Option<Permit>,
    /// When the call started on the breaker's clock, or [`UNTIMED`].
    started: u64,
}

/// `Guard::started` of a call the breaker does not time.
pub(crate) const UNTIMED: u64 = u64::MAX;

impl Guard {
    #[inline]
    pub(crate) fn finish(mut self, verdict: Verdict) {
        if let Some(permit) = self.permit.take() {
            self.shared.record(permit, verdict, self.started);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            let verdict = if std::thread::panicking() {
                Verdict::Failure
            } else {
                Verdict::Ignored
            };
            self.shared.record(permit, verdict, self.started);
        }
    }
}

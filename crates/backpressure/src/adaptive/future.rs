//! [`ResponseFuture`] of an [`AdaptiveLimit`](crate::AdaptiveLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use rampart_core::BoxError;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::adaptive::shared::{Permit, Shared, Waiting};
use crate::admission::Admission;

pin_project! {
    /// The response future of an adaptively limited service.
    ///
    /// It holds a permit and drives the inner service's future (timing it
    /// for the limit), or waits in line for a permit (under
    /// [`Admission::Wait`](crate::Admission::Wait), or
    /// [`Admission::Backpressure`](crate::Admission::Backpressure) after
    /// losing a race), or yields [`Overloaded`](crate::Overloaded).
    /// Dropping it releases its permit, or gives up its place in line.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        // Waiting for a permit. Boxed: only calls that wait pay.
        Waiting {
            wait: Box<Wait<S, Req>>,
        },
        Called {
            #[pin]
            future: S::Future,
            permit: Option<Permit>,
            start: Instant,
        },
        Rejected {
            error: Option<BoxError>,
        },
        Done,
    }
}

struct Wait<S, Req> {
    service: Option<S>,
    request: Option<Req>,
    shared: Arc<Shared>,
    /// The place in line; the permit is handed over in arrival order.
    waiting: Waiting,
    /// The bound on the wait; none for a backpressured call.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req> + Clone,
{
    /// Starts a call on `service`, which the caller has driven to
    /// readiness, with the permit `reserved` for it in `poll_ready` if
    /// any. When the call has to wait for a permit, the readied `service`
    /// moves into the future and a clone takes its place.
    pub(crate) fn start(
        shared: &Arc<Shared>,
        service: &mut S,
        request: Req,
        reserved: Option<Permit>,
    ) -> Self {
        let Some(permit) = reserved.or_else(|| shared.try_acquire()) else {
            let max = match shared.params.admission {
                Admission::FailFast => {
                    return Self {
                        state: State::Rejected {
                            error: Some(shared.reject().into()),
                        },
                    };
                }
                // `poll_ready` saw room, but another caller took it since:
                // wait for the next permit, without a bound.
                Admission::Backpressure => None,
                Admission::Wait(max) => Some(max),
            };
            let waiting = match shared.acquire_or_wait() {
                Ok(permit) => return Self::call(service, request, permit),
                Err(waiting) => waiting,
            };
            let fresh = service.clone();
            return Self {
                state: State::Waiting {
                    wait: Box::new(Wait {
                        service: Some(std::mem::replace(service, fresh)),
                        request: Some(request),
                        shared: shared.clone(),
                        waiting,
                        sleep: max.map(|max| Box::pin(tokio::time::sleep(max))),
                    }),
                },
            };
        };
        Self::call(service, request, permit)
    }

    fn call(service: &mut S, request: Req, permit: Permit) -> Self {
        Self {
            state: State::Called {
                // `permit` is dropped if `call` panics.
                future: service.call(request),
                permit: Some(permit),
                start: Instant::now(),
            },
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { wait } => {
                    if let Poll::Ready(permit) = wait.waiting.poll_permit(cx) {
                        let (Some(mut service), Some(request)) =
                            (wait.service.take(), wait.request.take())
                        else {
                            unreachable!("a waiting call holds its service and request");
                        };
                        let future = service.call(request);
                        this.state.set(State::Called {
                            future,
                            permit: Some(permit),
                            start: Instant::now(),
                        });
                        continue;
                    }
                    match &mut wait.sleep {
                        Some(sleep) => ready!(sleep.as_mut().poll(cx)),
                        None => return Poll::Pending,
                    }
                    let error = wait.shared.reject();
                    this.state.set(State::Done);
                    return Poll::Ready(Err(error.into()));
                }
                StateProj::Called {
                    future,
                    permit,
                    start,
                } => {
                    let result = ready!(future.poll(cx));
                    if let Some(permit) = permit.take() {
                        permit.complete(start.elapsed(), result.is_err());
                    }
                    this.state.set(State::Done);
                    return Poll::Ready(result.map_err(Into::into));
                }
                StateProj::Rejected { error } => {
                    let error = error.take();
                    this.state.set(State::Done);
                    if let Some(error) = error {
                        return Poll::Ready(Err(error));
                    }
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { .. } => "waiting",
            State::Called { .. } => "called",
            State::Rejected { .. } => "rejected",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

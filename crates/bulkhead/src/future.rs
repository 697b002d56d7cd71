//! [`ResponseFuture`], shared by [`Bulkhead`](crate::Bulkhead) and
//! [`KeyedBulkhead`](crate::KeyedBulkhead).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use rampart_core::BoxError;
use tokio::time::Sleep;
use tower_service::Service;

use crate::error::BulkheadFull;
use crate::permit::{Permit, Shared, Start, Waiting};
use crate::policy::{ReleaseOnResponse, ReleasePolicy};

pin_project! {
    /// The response future of a bulkhead service.
    ///
    /// It either holds a permit and drives the inner service's future, or
    /// waits (at most the max wait) for a permit before calling the inner
    /// service, or yields [`BulkheadFull`]. Dropping it at any point
    /// releases its permit or leaves the queue.
    pub struct ResponseFuture<S, Req, P = ReleaseOnResponse>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
        policy: P,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        // Queued for a permit, until the permit comes or the max wait
        // ends. Boxed: only calls that wait pay for it, and the future of
        // the common case stays small.
        Waiting {
            wait: Pin<Box<Wait<S, Req>>>,
        },
        // Holding a permit, driving the inner future.
        Called {
            #[pin]
            future: S::Future,
            permit: Option<Permit>,
        },
        Rejected {
            error: Option<BulkheadFull>,
        },
        Done,
    }
}

pin_project! {
    /// A queued call: the readied inner service, the request, its place in
    /// the queue and the max-wait timer.
    #[project = WaitProj]
    struct Wait<S, Req> {
        service: Option<S>,
        request: Option<Req>,
        waiting: Waiting,
        #[pin]
        sleep: Sleep,
    }
}

impl<S, Req, P> ResponseFuture<S, Req, P>
where
    S: Service<Req> + Clone,
{
    /// Starts a call on `service`, which the caller has driven to readiness.
    ///
    /// With a free permit the call goes to `service` at once. When it has
    /// to wait, the readied `service` moves into the future and a clone
    /// takes its place (tower's pattern for calls that complete later).
    pub(crate) fn start(shared: &Arc<Shared>, service: &mut S, request: Req, policy: P) -> Self {
        if let Some(permit) = shared.try_admit() {
            return Self {
                state: State::Called {
                    // `permit` is dropped if `call` panics.
                    future: service.call(request),
                    permit: Some(permit),
                },
                policy,
            };
        }
        let state = match shared.start() {
            Start::Admitted(permit) => State::Called {
                // `permit` is dropped if `call` panics.
                future: service.call(request),
                permit: Some(permit),
            },
            Start::Wait(waiting) => {
                let fresh = service.clone();
                State::Waiting {
                    wait: Box::pin(Wait {
                        service: Some(std::mem::replace(service, fresh)),
                        request: Some(request),
                        waiting,
                        sleep: tokio::time::sleep(shared.max_wait()),
                    }),
                }
            }
            Start::Rejected(error) => State::Rejected { error: Some(error) },
        };
        Self { state, policy }
    }
}

impl<S, Req, P> Future for ResponseFuture<S, Req, P>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    P: ReleasePolicy<S::Response>,
{
    type Output = Result<P::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { wait } => {
                    let WaitProj {
                        service,
                        request,
                        waiting,
                        sleep,
                    } = wait.as_mut().project();
                    let permit = if sleep.poll(cx).is_ready() {
                        // Time is up, but a permit granted meanwhile (even
                        // at this very moment) is still taken.
                        match waiting.give_up() {
                            Ok(permit) => permit,
                            Err(full) => {
                                this.state.set(State::Done);
                                return Poll::Ready(Err(full.into()));
                            }
                        }
                    } else {
                        ready!(waiting.poll_acquire(cx))
                    };
                    let (Some(mut service), Some(request)) = (service.take(), request.take())
                    else {
                        unreachable!("a waiting call holds its service and request");
                    };
                    let future = service.call(request);
                    this.state.set(State::Called {
                        future,
                        permit: Some(permit),
                    });
                }
                StateProj::Called { future, permit } => {
                    let result = ready!(future.poll(cx));
                    let permit = permit.take();
                    this.state.set(State::Done);
                    return Poll::Ready(match (result, permit) {
                        (Ok(response), Some(permit)) => Ok(this.policy.attach(response, permit)),
                        (Ok(_), None) => unreachable!("a called future holds its permit"),
                        (Err(error), _) => Err(error.into()),
                    });
                }
                StateProj::Rejected { error } => {
                    let error = error.take();
                    this.state.set(State::Done);
                    if let Some(error) = error {
                        return Poll::Ready(Err(error.into()));
                    }
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

impl<S, Req, P> fmt::Debug for ResponseFuture<S, Req, P>
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

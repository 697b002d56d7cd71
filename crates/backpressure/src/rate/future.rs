//! [`ResponseFuture`], shared by [`RateLimit`](crate::RateLimit) and
//! [`KeyedRateLimit`](crate::KeyedRateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use rampart_core::BoxError;
use tokio::time::Sleep;
use tower_service::Service;

use crate::error::Overloaded;
use crate::rate::shared::{Reservation, Shared, Start};

pin_project! {
    /// The response future of a rate-limited service.
    ///
    /// It drives the inner service's future, or waits for the call's
    /// reserved slot before calling the inner service, or yields
    /// [`Overloaded`]. Dropped while waiting, it gives its token back.
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
        // Waiting for a reserved slot. Boxed: only calls that wait pay.
        Waiting {
            wait: Pin<Box<Wait<S, Req>>>,
        },
        Called {
            #[pin]
            future: S::Future,
        },
        Rejected {
            error: Option<Overloaded>,
        },
        Done,
    }
}

pin_project! {
    #[project = WaitProj]
    struct Wait<S, Req> {
        service: Option<S>,
        request: Option<Req>,
        reservation: Reservation,
        #[pin]
        sleep: Sleep,
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req> + Clone,
{
    /// Starts a call on `service`, which the caller has driven to
    /// readiness. When the call has to wait for its slot, the readied
    /// `service` moves into the future and a clone takes its place.
    pub(crate) fn start(shared: &Arc<Shared>, service: &mut S, request: Req) -> Self {
        let state = match shared.start() {
            Start::Now => State::Called {
                future: service.call(request),
            },
            Start::After(wait, reservation) => {
                let fresh = service.clone();
                State::Waiting {
                    wait: Box::pin(Wait {
                        service: Some(std::mem::replace(service, fresh)),
                        request: Some(request),
                        reservation,
                        sleep: tokio::time::sleep(wait),
                    }),
                }
            }
            Start::Refused(error) => State::Rejected { error: Some(error) },
        };
        Self { state }
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
                    let WaitProj {
                        service,
                        request,
                        reservation,
                        sleep,
                    } = wait.as_mut().project();
                    ready!(sleep.poll(cx));
                    reservation.use_it();
                    let (Some(mut service), Some(request)) = (service.take(), request.take())
                    else {
                        unreachable!("a waiting call holds its service and request");
                    };
                    let future = service.call(request);
                    this.state.set(State::Called { future });
                }
                StateProj::Called { future } => {
                    let result = ready!(future.poll(cx));
                    this.state.set(State::Done);
                    return Poll::Ready(result.map_err(Into::into));
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

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    /// How long this call still waits for its slot; zero once it is
    /// called or finished.
    pub fn remaining_wait(&self) -> Duration {
        match &self.state {
            State::Waiting { wait } => wait
                .sleep
                .deadline()
                .saturating_duration_since(tokio::time::Instant::now()),
            _ => Duration::ZERO,
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

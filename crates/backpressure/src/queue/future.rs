//! [`ResponseFuture`] of a [`Queue`](crate::Queue).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use rampart_core::BoxError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Sleep;

use crate::queue::service::enqueue;
use crate::queue::shared::{Shared, Turn};
use crate::queue::worker::Message;

pin_project! {
    /// The response future of a queued call.
    ///
    /// It waits in line (under [`Admission::Wait`](crate::Admission::Wait),
    /// or after losing a race under
    /// [`Admission::Backpressure`](crate::Admission::Backpressure)) for a
    /// queue slot, first come first served, then for the worker to call
    /// the inner service, then
    /// drives the inner service's future; or it yields
    /// [`Overloaded`](crate::Overloaded) or
    /// [`QueueClosed`](crate::QueueClosed). Dropped while waiting, it
    /// leaves the line (passing on a slot granted meanwhile); dropped while
    /// queued, the worker skips the call.
    pub struct ResponseFuture<F, Req> {
        #[pin]
        state: State<F, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, Req> {
        // Waiting for a slot. Boxed: only calls that wait pay.
        Waiting {
            wait: Box<Wait<F, Req>>,
        },
        Queued {
            rx: oneshot::Receiver<Result<F, BoxError>>,
            shared: Arc<Shared>,
        },
        Called {
            #[pin]
            future: F,
        },
        Failed {
            error: Option<BoxError>,
        },
        Done,
    }
}

struct Wait<F, Req> {
    request: Option<Req>,
    tx: mpsc::UnboundedSender<Message<Req, F>>,
    /// The call's place in line; dropped with the future, it leaves the
    /// line or passes a granted slot on.
    turn: Turn,
    /// The bound on the wait; none for a backpressured call.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<F, Req> ResponseFuture<F, Req> {
    pub(crate) fn queued(rx: oneshot::Receiver<Result<F, BoxError>>, shared: Arc<Shared>) -> Self {
        Self {
            state: State::Queued { rx, shared },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }

    pub(crate) fn waiting(
        request: Req,
        tx: mpsc::UnboundedSender<Message<Req, F>>,
        turn: Turn,
        max: Option<Duration>,
    ) -> Self {
        Self {
            state: State::Waiting {
                wait: Box::new(Wait {
                    request: Some(request),
                    tx,
                    turn,
                    sleep: max.map(|max| Box::pin(tokio::time::sleep(max))),
                }),
            },
        }
    }
}

impl<F, Req, T, E> Future for ResponseFuture<F, Req>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { wait } => {
                    let slot = match wait.turn.poll(cx) {
                        Poll::Ready(slot) => slot,
                        Poll::Pending => {
                            match &mut wait.sleep {
                                Some(sleep) => ready!(sleep.as_mut().poll(cx)),
                                None => return Poll::Pending,
                            }
                            // The bound is up. A slot granted meanwhile came
                            // in time: use it.
                            match wait.turn.give_up() {
                                Some(slot) => slot,
                                None => {
                                    let error = wait.turn.shared().reject();
                                    this.state.set(State::Done);
                                    return Poll::Ready(Err(error.into()));
                                }
                            }
                        }
                    };
                    let Some(request) = wait.request.take() else {
                        unreachable!("a waiting call holds its request");
                    };
                    let shared = wait.turn.shared().clone();
                    let next = match enqueue(&wait.tx, &shared, request, slot) {
                        Ok(rx) => State::Queued { rx, shared },
                        Err(error) => State::Failed { error: Some(error) },
                    };
                    this.state.set(next);
                }
                StateProj::Queued { rx, shared } => {
                    let future = match ready!(Pin::new(rx).poll(cx)) {
                        Ok(Ok(future)) => future,
                        Ok(Err(error)) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(error));
                        }
                        Err(_) => {
                            let error = shared.closed();
                            this.state.set(State::Done);
                            return Poll::Ready(Err(error.into()));
                        }
                    };
                    this.state.set(State::Called { future });
                }
                StateProj::Called { future } => {
                    let result = ready!(future.poll(cx));
                    this.state.set(State::Done);
                    return Poll::Ready(result.map_err(Into::into));
                }
                StateProj::Failed { error } => {
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

impl<F, Req> fmt::Debug for ResponseFuture<F, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { .. } => "waiting",
            State::Queued { .. } => "queued",
            State::Called { .. } => "called",
            State::Failed { .. } => "failed",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

//! [`Queue`]: the service.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rampart_core::BoxError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tower_service::Service;

use crate::admission::Admission;
use crate::queue::codel::Codel;
use crate::queue::future::ResponseFuture;
use crate::queue::handle::Handle;
use crate::queue::shared::{Refused, Shared, Slot, Turn};
use crate::queue::worker::{self, Message};

/// A bounded queue in front of an inner service, drained by a worker task.
/// Made by [`QueueLayer`](crate::QueueLayer).
///
/// Callers hand requests to the queue; the worker waits for the inner
/// service to be ready, calls it inside the caller's tracing span and hands
/// the response future back to the caller, who drives it (so the inner
/// service's calls still run concurrently). A call takes its queue slot
/// when it starts, in `call`; an idle client holds nothing. Callers waiting
/// for a slot get them in the order they came. Clones share the queue and
/// its worker.
///
/// The inner service needs no `Clone`: the worker owns it.
pub struct Queue<Req, F> {
    tx: mpsc::UnboundedSender<Message<Req, F>>,
    shared: Arc<Shared>,
    /// Under backpressure, this client's place in the line for a slot, or
    /// the slot it was granted, kept for its next call.
    ready: Readiness,
}

enum Readiness {
    /// Holds nothing.
    Idle,
    /// `poll_ready` found the queue full and joined the line.
    Waiting(Turn),
    /// The line granted a slot; the next call uses it.
    Granted(Slot),
}

impl<Req, F> Queue<Req, F> {
    /// Spawns the worker for `service` (on the current Tokio runtime).
    pub(crate) fn spawn<S>(service: S, shared: Arc<Shared>, codel: Option<Codel>) -> Self
    where
        S: Service<Req, Future = F> + Send + 'static,
        S::Error: Into<BoxError>,
        F: Send + 'static,
        Req: Send + 'static,
    {
        Self {
            tx: worker::spawn(service, shared.clone(), codel),
            shared,
            ready: Readiness::Idle,
        }
    }

    /// A handle on this queue.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }
}

/// Starts a call on the queue: with the slot granted to the caller under
/// backpressure, else a free slot, else per the admission (fail, or wait
/// in line for a slot). Shedding on depth comes first.
pub(crate) fn start<Req, F>(
    tx: &mpsc::UnboundedSender<Message<Req, F>>,
    shared: &Arc<Shared>,
    request: Req,
    granted: Option<Slot>,
) -> ResponseFuture<F, Req> {
    let slot = match granted.map_or_else(|| shared.try_reserve(), Ok) {
        Ok(slot) => slot,
        Err(Refused::Shed(error)) => return ResponseFuture::failed(error.into()),
        Err(Refused::Busy) => {
            let max = match shared.admission() {
                Admission::FailFast => return ResponseFuture::failed(shared.reject().into()),
                // Under backpressure `poll_ready` saw room, but another
                // caller took it since: wait in line, without a bound.
                Admission::Backpressure => None,
                Admission::Wait(max) => Some(max),
            };
            match shared.wait_turn() {
                Ok(slot) => slot,
                Err(turn) => return ResponseFuture::waiting(request, tx.clone(), turn, max),
            }
        }
    };
    match enqueue(tx, shared, request, slot) {
        Ok(rx) => ResponseFuture::queued(rx, shared.clone()),
        Err(error) => ResponseFuture::failed(error),
    }
}

/// Hands `request` to the worker, holding `slot` until the inner service
/// has it.
pub(crate) fn enqueue<Req, F>(
    tx: &mpsc::UnboundedSender<Message<Req, F>>,
    shared: &Shared,
    request: Req,
    slot: Slot,
) -> Result<oneshot::Receiver<Result<F, BoxError>>, BoxError> {
    let (reply, rx) = oneshot::channel();
    let message = Message {
        request,
        tx: reply,
        span: tracing::Span::current(),
        slot,
        enqueued: Instant::now(),
    };
    match tx.send(message) {
        Ok(()) => Ok(rx),
        // The worker is gone; the message, and its slot, are dropped.
        Err(_) => Err(shared.closed().into()),
    }
}

impl<Req, F> Clone for Queue<Req, F> {
    fn clone(&self) -> Self {
        // The clone has not waited for anything: no place in line.
        Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
            ready: Readiness::Idle,
        }
    }
}

impl<Req, F, T, E> Service<Req> for Queue<Req, F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Response = T;
    type Error = BoxError;
    type Future = ResponseFuture<F, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.tx.is_closed() {
            return Poll::Ready(Err(self.shared.closed().into()));
        }
        if self.shared.admission() == Admission::Backpressure {
            loop {
                match &mut self.ready {
                    Readiness::Granted(_) => break,
                    Readiness::Waiting(turn) => {
                        let slot = ready!(turn.poll(cx));
                        self.ready = Readiness::Granted(slot);
                    }
                    // Room, and nobody waiting before us: ready, holding
                    // nothing (the call takes its slot).
                    Readiness::Idle if self.shared.has_room() => break,
                    Readiness::Idle => {
                        self.ready = match self.shared.wait_turn() {
                            Ok(slot) => Readiness::Granted(slot),
                            Err(turn) => Readiness::Waiting(turn),
                        };
                    }
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let granted = match std::mem::replace(&mut self.ready, Readiness::Idle) {
            Readiness::Granted(slot) => Some(slot),
            other => {
                self.ready = other;
                None
            }
        };
        start(&self.tx, &self.shared, request, granted)
    }
}

impl<Req, F> fmt::Debug for Queue<Req, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("queue", &self.shared)
            .finish()
    }
}

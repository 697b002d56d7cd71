//! [`Queue`]: the service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rampart_core::BoxError;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tower_service::Service;

use crate::admission::Admission;
use crate::queue::codel::Codel;
use crate::queue::future::ResponseFuture;
use crate::queue::handle::Handle;
use crate::queue::shared::{Shared, Slot};
use crate::queue::worker::{self, Message};

/// A bounded queue in front of an inner service, drained by a worker task.
/// Made by [`QueueLayer`](crate::QueueLayer).
///
/// Callers hand requests to the queue; the worker waits for the inner
/// service to be ready, calls it inside the caller's tracing span and hands
/// the response future back to the caller, who drives it (so the inner
/// service's calls still run concurrently). A call takes its queue slot
/// when it starts, in `call`; an idle client holds nothing. Clones share
/// the queue and its worker.
///
/// The inner service needs no `Clone`: the worker owns it.
pub struct Queue<Req, F> {
    tx: mpsc::UnboundedSender<Message<Req, F>>,
    shared: Arc<Shared>,
    /// Under backpressure, the wake-up for a freed slot.
    notified: Option<Pin<Box<OwnedNotified>>>,
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
        let (tx, rx) = mpsc::unbounded_channel();
        worker::spawn(service, rx, shared.clone(), codel);
        Self {
            tx,
            shared,
            notified: None,
        }
    }

    /// A handle on this queue.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
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
        // The clone has not waited for anything: no wake-up.
        Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
            notified: None,
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
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let Some(slot) = self.shared.try_reserve() else {
            let max = match self.shared.admission() {
                Admission::FailFast => {
                    return ResponseFuture::failed(self.shared.reject().into());
                }
                // `poll_ready` saw room, but another caller took it since:
                // wait for the next slot, without a bound.
                Admission::Backpressure => None,
                Admission::Wait(max) => Some(max),
            };
            return ResponseFuture::waiting(request, self.tx.clone(), self.shared.clone(), max);
        };
        match enqueue(&self.tx, &self.shared, request, slot) {
            Ok(rx) => ResponseFuture::queued(rx, self.shared.clone()),
            Err(error) => ResponseFuture::failed(error),
        }
    }
}

impl<Req, F> fmt::Debug for Queue<Req, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("queue", &self.shared)
            .finish()
    }
}

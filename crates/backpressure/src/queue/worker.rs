//! The worker task: drains the queue into the inner service.

use std::sync::Arc;

use rampart_core::BoxError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tower_service::Service;

use crate::error::QueueClosed;
use crate::queue::codel::{Codel, CodelState};
use crate::queue::shared::{Shared, Slot};

/// A queued call.
pub(crate) struct Message<Req, F> {
    pub(crate) request: Req,
    /// Receives the inner service's future, which the caller drives.
    pub(crate) tx: oneshot::Sender<Result<F, BoxError>>,
    /// The caller's span, entered around the inner `call`.
    pub(crate) span: tracing::Span,
    pub(crate) slot: Slot,
    pub(crate) enqueued: Instant,
}

/// Spawns the worker for `service` on the current Tokio runtime and
/// returns the queue's sending end. The worker ends once every clone of it
/// is dropped (and the calls still queued are done).
pub(crate) fn spawn<S, Req>(
    service: S,
    shared: Arc<Shared>,
    codel: Option<Codel>,
) -> mpsc::UnboundedSender<Message<Req, S::Future>>
where
    S: Service<Req> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    Req: Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(service, rx, shared, codel.map(CodelState::new)));
    tx
}

async fn run<S, Req>(
    mut service: S,
    mut rx: mpsc::UnboundedReceiver<Message<Req, S::Future>>,
    shared: Arc<Shared>,
    mut codel: Option<CodelState>,
) where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    loop {
        if let Some(codel) = &mut codel
            && rx.is_empty()
        {
            codel.on_empty();
        }
        let Some(message) = rx.recv().await else {
            return;
        };
        let Message {
            request,
            tx,
            span,
            slot,
            enqueued,
        } = message;
        if tx.is_closed() {
            // The caller gave up while queued.
            drop(slot);
            continue;
        }
        let ready: Result<(), BoxError> =
            std::future::poll_fn(|cx| service.poll_ready(cx).map_err(Into::into)).await;
        if let Err(error) = ready {
            let closed = shared.close(QueueClosed::new(Some(Arc::new(error))));
            tracing::debug!(name = %shared.name(), error = %closed, "queue worker stopped");
            drop(slot);
            let _ = tx.send(Err(closed.clone().into()));
            rx.close();
            while let Some(rest) = rx.recv().await {
                let _ = rest.tx.send(Err(closed.clone().into()));
            }
            return;
        }
        if tx.is_closed() {
            // The caller gave up while the inner service got ready; the
            // readiness carries over to the next call.
            drop(slot);
            continue;
        }
        let now = Instant::now();
        let sojourn = now.saturating_duration_since(enqueued);
        shared.record_sojourn(sojourn);
        if let Some(codel) = &mut codel
            && codel.on_dequeue(now, sojourn)
        {
            drop(slot);
            let _ = tx.send(Err(shared.shed(sojourn).into()));
            continue;
        }
        let future = span.in_scope(|| service.call(request));
        // The slot is free once the inner service has the call.
        drop(slot);
        let _ = tx.send(Ok(future));
    }
}

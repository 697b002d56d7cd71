//! The hedging service's response future: the attempts in flight, inline,
//! and the one timer that says when the next hedge is due.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use rampart_core::{BoxError, Classify};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::hedge::config::MAX_HEDGES;
use crate::hedge::layer::Shared;

pin_project! {
    /// The future of a call through a hedging layer: the first attempt,
    /// the hedges sent while it is unanswered, and the answer of whichever
    /// answers first with something the classifier does not call a
    /// failure. Returning drops the attempts still in flight (cancelling
    /// them), and so does dropping this future.
    pub struct HedgeFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        attempts: Attempts<S::Future>,
        // Armed while another hedge may be sent: fires when it is due.
        #[pin]
        timer: Option<Sleep>,
        h: Hedging<S, Req, C>,
    }
}

/// Everything but the attempts and the timer.
struct Hedging<S, Req, C> {
    /// The inner service and a copy of the request for the next hedge;
    /// `None` once no more hedges will be sent.
    next: Option<(S, Req)>,
    shared: Arc<Shared>,
    classifier: C,
    delay: Duration,
    /// When the call started on the latency histogram's clock, until its
    /// latency is recorded (tracked delays only).
    started: Option<u64>,
    /// Attempts sent, the first included.
    sent: u32,
    in_flight: u32,
}

impl<S, Req, C> HedgeFuture<S, Req, C>
where
    S: Service<Req> + Clone,
    Req: Clone,
{
    /// Sends the first attempt on `inner`, which was driven ready, and
    /// keeps what a hedge needs when one may follow.
    pub(crate) fn start(
        shared: &Arc<Shared>,
        inner: &mut S,
        req: Req,
        replayable: bool,
        classifier: C,
    ) -> Self {
        shared.budget.deposit();
        let started = shared.delay.clock();
        let delay = if replayable {
            shared.delay.at(started)
        } else {
            None
        };
        let mut h = Hedging {
            next: None,
            shared: Arc::clone(shared),
            classifier,
            delay: delay.unwrap_or_default(),
            started,
            sent: 0,
            in_flight: 0,
        };
        let timer = delay.map(|d| {
            h.next = Some((inner.clone(), req.clone()));
            tokio::time::sleep(d)
        });
        Self {
            attempts: Attempts {
                a0: h.send(inner, req),
                ..Attempts::default()
            },
            timer,
            h,
        }
    }
}

impl<S, Req, C> Hedging<S, Req, C>
where
    S: Service<Req>,
{
    /// Sends one attempt on `service`, in its own span.
    fn send(&mut self, service: &mut S, req: Req) -> Attempt<S::Future> {
        self.sent += 1;
        self.in_flight += 1;
        let span = tracing::debug_span!(
            "hedge_attempt",
            attempt = self.sent,
            name = %self.shared.name
        );
        let fut = {
            let _entered = span.enter();
            service.call(req)
        };
        Attempt {
            fut: Some(fut),
            span,
        }
    }

    /// Records the call's latency, once: when the first attempt answers,
    /// or when a hedge's answer ends the call (then the wait so far, a
    /// lower bound of the first attempt's latency).
    fn record(&mut self) {
        if let Some(started) = self.started.take() {
            self.shared.delay.record(started);
        }
    }
}

impl<S, Req, C> Future for HedgeFuture<S, Req, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
    Req: Clone,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let h = this.h;
        loop {
            // Every attempt in flight, in the order they were sent.
            for i in 0..h.sent {
                let Poll::Ready(result) = this.attempts.as_mut().get(i).poll_answer(cx) else {
                    continue;
                };
                h.in_flight -= 1;
                let failed = h.classifier.classify(&result).is_failure();
                if i == 0 || !failed {
                    h.record();
                }
                if !failed || h.in_flight == 0 {
                    if !failed && i > 0 {
                        h.shared.metrics.won.increment(1);
                        tracing::debug!(name = %h.shared.name, attempt = i + 1, "hedge won");
                    }
                    this.attempts.as_mut().cancel();
                    this.timer.set(None);
                    return Poll::Ready(result.map_err(Into::into));
                }
                // Another attempt is still in flight: wait for it.
            }

            // The next hedge, when one may be sent and is due.
            let (Some(timer), Some((service, _))) = (this.timer.as_mut().as_pin_mut(), &mut h.next)
            else {
                return Poll::Pending;
            };
            ready!(timer.poll(cx));
            // While the clone is not ready, the attempts in flight carry on.
            if let Err(e) = ready!(service.poll_ready(cx)) {
                let error: BoxError = e.into();
                tracing::debug!(name = %h.shared.name, %error, "hedge not sent: service failed");
                h.next = None;
                this.timer.set(None);
                return Poll::Pending;
            }
            if !h.shared.budget.try_withdraw() {
                h.shared.metrics.budget_exhausted.increment(1);
                tracing::debug!(name = %h.shared.name, "hedge not sent: budget exhausted");
                // Dropping the clone releases what its readiness reserved.
                h.next = None;
                this.timer.set(None);
                return Poll::Pending;
            }
            let Some((mut service, req)) = h.next.take() else {
                return Poll::Pending;
            };
            let attempt = if h.sent >= h.shared.max_hedges {
                // The last hedge: it takes the service and the request.
                this.timer.set(None);
                h.send(&mut service, req)
            } else {
                let attempt = h.send(&mut service, req.clone());
                h.next = Some((service, req));
                if let Some(timer) = this.timer.as_mut().as_pin_mut() {
                    timer.reset(Instant::now() + h.delay);
                }
                attempt
            };
            this.attempts.as_mut().get(h.sent - 1).set(attempt);
            h.shared.metrics.sent.increment(1);
            tracing::debug!(name = %h.shared.name, attempt = h.sent, "hedge sent");
        }
    }
}

impl<S, Req, C> fmt::Debug for HedgeFuture<S, Req, C>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeFuture")
            .field("sent", &self.h.sent)
            .field("in_flight", &self.h.in_flight)
            .finish()
    }
}

// === impl Attempts ===

pin_project! {
    /// Room for the first attempt and `MAX_HEDGES` hedges, inline.
    struct Attempts<F> {
        #[pin]
        a0: Attempt<F>,
        #[pin]
        a1: Attempt<F>,
        #[pin]
        a2: Attempt<F>,
        #[pin]
        a3: Attempt<F>,
    }
}

// One slot per attempt: keep `Attempts` in step with the limit.
const _: () = assert!(MAX_HEDGES == 3);

impl<F> Default for Attempts<F> {
    fn default() -> Self {
        Self {
            a0: Attempt::default(),
            a1: Attempt::default(),
            a2: Attempt::default(),
            a3: Attempt::default(),
        }
    }
}

impl<F> Attempts<F> {
    /// Attempt `i` (0 is the first).
    fn get(self: Pin<&mut Self>, i: u32) -> Pin<&mut Attempt<F>> {
        let this = self.project();
        match i {
            0 => this.a0,
            1 => this.a1,
            2 => this.a2,
            _ => this.a3,
        }
    }

    /// Drops every attempt still in flight.
    fn cancel(mut self: Pin<&mut Self>) {
        for i in 0..=MAX_HEDGES {
            self.as_mut().get(i).cancel();
        }
    }
}

pin_project! {
    /// One attempt in flight (or none), and the span it runs in.
    struct Attempt<F> {
        #[pin]
        fut: Option<F>,
        span: tracing::Span,
    }
}

impl<F> Default for Attempt<F> {
    fn default() -> Self {
        Self {
            fut: None,
            span: tracing::Span::none(),
        }
    }
}

impl<F> Attempt<F> {
    /// Drops the attempt in flight, if any, inside its span.
    fn cancel(self: Pin<&mut Self>) {
        let mut this = self.project();
        if this.fut.is_some() {
            let _entered = this.span.enter();
            this.fut.set(None);
        }
    }
}

impl<F: Future> Attempt<F> {
    /// The attempt's answer, once; pending while it has none (or when no
    /// attempt is in flight).
    fn poll_answer(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        let Some(fut) = this.fut.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        let out = {
            let _entered = this.span.enter();
            ready!(fut.poll(cx))
        };
        this.fut.set(None);
        Poll::Ready(out)
    }
}

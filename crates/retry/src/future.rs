//! The retry service's response future: tries, timers and backoff.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use rampart_core::{BoxError, Classify, Decision};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::backoff::Rng;
use crate::error::{DeadlineExceeded, TryTimeout};
use crate::layer::Shared;
use crate::policy::{ReplayPolicy, RetryOverride};

pin_project! {
    /// The future of a call through a retry layer: makes the tries, waits
    /// out the backoffs and returns the first final outcome. Dropping it
    /// cancels the try in flight.
    pub struct ResponseFuture<S, Req, C, P>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        #[pin]
        timer: Timer,
        r: Retrying<S, Req, C, P, S::Response>,
    }
}

pin_project! {
    /// The one timer of a call: the per-try timeout, the backoff, the
    /// deadline, in turn. Kept inline (reset, not reallocated), created on
    /// first use, so a call without timeouts never touches the timer wheel.
    #[project = TimerProj]
    enum Timer {
        Off,
        On { #[pin] sleep: Sleep, armed: bool },
    }
}

impl Timer {
    fn arm(mut self: Pin<&mut Self>, at: Instant) {
        if let TimerProj::On { sleep, armed } = self.as_mut().project() {
            sleep.reset(at);
            *armed = true;
            return;
        }
        self.set(Timer::On {
            sleep: tokio::time::sleep_until(at),
            armed: true,
        });
    }

    fn disarm(self: Pin<&mut Self>) {
        if let TimerProj::On { armed, .. } = self.project() {
            *armed = false;
        }
    }

    /// Ready once when the armed timer fires; pending while none is armed.
    fn poll_fired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project() {
            TimerProj::On { sleep, armed } if *armed => {
                ready!(sleep.poll(cx));
                *armed = false;
                Poll::Ready(())
            }
            _ => Poll::Pending,
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] fut: F },
        Backoff,
        Ready,
    }
}

/// Everything but the try in flight.
struct Retrying<S, Req, C, P, T> {
    service: S,
    /// A copy to replay; `None` when the request may not be replayed.
    request: Option<Req>,
    shared: Arc<Shared>,
    classifier: C,
    policy: P,
    attempt: u32,
    max_attempts: u32,
    /// When the deadline passes, and how long it was.
    deadline: Option<(Instant, Duration)>,
    last: Option<Result<T, BoxError>>,
    prev_delay: Option<Duration>,
    rng: Option<Rng>,
    span: tracing::Span,
}

enum Step<T> {
    Return(Result<T, BoxError>),
    /// Back off until this instant, then try again.
    Backoff(Instant),
}

impl<S, Req, C, P> ResponseFuture<S, Req, C, P>
where
    S: Service<Req>,
    P: ReplayPolicy<Req>,
    Req: Clone,
{
    pub(crate) fn start(
        shared: &Arc<Shared>,
        service: S,
        req: Req,
        replayable: bool,
        overrides: RetryOverride,
        classifier: C,
        policy: P,
    ) -> Self {
        let max_attempts = overrides.max_attempts.unwrap_or(shared.max_attempts).max(1);
        let deadline = overrides
            .deadline
            .or(shared.deadline)
            .map(|d| (Instant::now() + d, d));
        // A call that may make only one try neither spends nor earns
        // retries: it does not deposit (and pays no clock read for it).
        if max_attempts > 1
            && let Some(budget) = &shared.budget
        {
            budget.deposit();
        }
        let mut r = Retrying {
            service,
            request: (replayable && max_attempts > 1).then(|| req.clone()),
            shared: Arc::clone(shared),
            classifier,
            policy,
            attempt: 0,
            max_attempts,
            deadline,
            last: None,
            prev_delay: None,
            rng: None,
            span: tracing::Span::none(),
        };
        let (fut, until) = r.start_try(req);
        let timer = match until {
            Some(at) => Timer::On {
                sleep: tokio::time::sleep_until(at),
                armed: true,
            },
            None => Timer::Off,
        };
        Self {
            state: State::Calling { fut },
            timer,
            r,
        }
    }
}

impl<S, Req, C, P, T> Retrying<S, Req, C, P, T>
where
    S: Service<Req, Response = T>,
    P: ReplayPolicy<Req>,
    Req: Clone,
{
    /// Starts the next try, telling the upstream how long it has; returns
    /// its future and when it times out.
    fn start_try(&mut self, mut req: Req) -> (S::Future, Option<Instant>) {
        self.attempt += 1;
        self.shared.metrics.attempts.increment(1);
        self.span = tracing::debug_span!(
            "retry_attempt",
            attempt = self.attempt,
            name = %self.shared.name
        );
        let deadline = self.deadline.map(|(at, _)| at);
        let until = if self.shared.per_try_timeout.is_some() || deadline.is_some() {
            let now = Instant::now();
            let per_try = self.shared.per_try_timeout.map(|d| now + d);
            let until = match (per_try, deadline) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(now),
            };
            self.policy.propagate_deadline(
                &mut req,
                until.saturating_duration_since(now),
                self.shared.deadline_header.as_ref(),
            );
            Some(until)
        } else {
            None
        };
        let _entered = self.span.enter();
        (self.service.call(req), until)
    }

    /// The request for the next try: the kept copy itself for the last.
    fn next_request(&mut self) -> Option<Req> {
        if self.attempt + 1 >= self.max_attempts {
            self.request.take()
        } else {
            self.request.clone()
        }
    }

    fn deadline_passed(&self) -> Option<DeadlineExceeded> {
        let (at, deadline) = self.deadline?;
        (Instant::now() >= at).then_some(DeadlineExceeded { deadline })
    }

    fn take_last(&mut self) -> Result<T, BoxError> {
        self.last.take().unwrap_or_else(|| {
            Err(DeadlineExceeded {
                deadline: self.deadline.map_or(Duration::ZERO, |(_, d)| d),
            }
            .into())
        })
    }

    /// Decides what follows a try that ended with `result`.
    fn after(&mut self, result: Result<T, BoxError>, decision: Decision) -> Step<T> {
        let pushback = decision.retry_after();
        if !decision.is_retryable()
            || self.attempt >= self.max_attempts
            || self.request.is_none()
            || pushback.is_some_and(|p| p > self.shared.max_retry_after)
        {
            return Step::Return(result);
        }
        let shared = &self.shared;
        let rng = self.rng.get_or_insert_with(|| Rng::new(shared.next_seed()));
        let backoff = shared.backoff.delay(self.attempt, self.prev_delay, rng);
        // Server pushback wins when it is longer than our own backoff.
        let delay = backoff.max(pushback.unwrap_or_default());
        let now = Instant::now();
        if self.deadline.is_some_and(|(at, _)| now + delay >= at) {
            return Step::Return(result);
        }
        if let Some(budget) = &shared.budget
            && !budget.try_withdraw()
        {
            shared.metrics.budget_exhausted.increment(1);
            tracing::debug!(name = %shared.name, "retry budget exhausted");
            return Step::Return(result);
        }
        shared.metrics.retries.increment(1);
        tracing::debug!(name = %shared.name, attempt = self.attempt, ?delay, "retrying");
        self.prev_delay = Some(backoff);
        self.last = Some(result);
        Step::Backoff(now + delay)
    }
}

impl<S, Req, C, P> Future for ResponseFuture<S, Req, C, P>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
    P: ReplayPolicy<Req>,
    Req: Clone,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let r = this.r;
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { fut } => {
                    let polled = {
                        let _entered = r.span.enter();
                        fut.poll(cx)
                    };
                    let (result, decision) = match polled {
                        Poll::Ready(result) => {
                            let decision = r.classifier.classify(&result);
                            (result.map_err(Into::into), decision)
                        }
                        Poll::Pending => {
                            ready!(this.timer.as_mut().poll_fired(cx));
                            if let Some(err) = r.deadline_passed() {
                                return Poll::Ready(Err(err.into()));
                            }
                            let timeout = r.shared.per_try_timeout.unwrap_or_default();
                            (Err(TryTimeout { timeout }.into()), Decision::failure())
                        }
                    };
                    match r.after(result, decision) {
                        Step::Return(result) => return Poll::Ready(result),
                        Step::Backoff(at) => {
                            this.timer.as_mut().arm(at);
                            this.state.set(State::Backoff);
                        }
                    }
                }
                StateProj::Backoff => {
                    ready!(this.timer.as_mut().poll_fired(cx));
                    if let Some((at, _)) = r.deadline {
                        this.timer.as_mut().arm(at);
                    }
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    if this.timer.as_mut().poll_fired(cx).is_ready() {
                        return Poll::Ready(r.take_last());
                    }
                    match r.service.poll_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                        Poll::Ready(Ok(())) => {}
                    }
                    let Some(req) = r.next_request() else {
                        return Poll::Ready(r.take_last());
                    };
                    let (fut, until) = r.start_try(req);
                    match until {
                        Some(at) => this.timer.as_mut().arm(at),
                        None => this.timer.as_mut().disarm(),
                    }
                    this.state.set(State::Calling { fut });
                }
            }
        }
    }
}

impl<S, Req, C, P> fmt::Debug for ResponseFuture<S, Req, C, P>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempt", &self.r.attempt)
            .field("max_attempts", &self.r.max_attempts)
            .finish()
    }
}

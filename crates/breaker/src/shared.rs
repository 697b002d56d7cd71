//! One breaker's state as every clone of its services sees it: the core
//! state machine, its clock, and the ways it reports (watch, metrics,
//! tracing, wake-ups).

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge};
use rampart_core::clock::Origin;
use rampart_core::metric_name;
use rampart_core::metrics::{InstanceLabels, labels, outcome};
use tokio::sync::{Notify, watch};

use crate::config::{BreakerConfig, RejectMode};
use crate::core::{Core, Permit, State, Transition, Verdict};
use crate::error::BreakerOpen;
use crate::future::UNTIMED;
use crate::sync::Mutex;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) core: Core,
    origin: Origin,
    pub(crate) mode: RejectMode,
    pub(crate) notify: Arc<Notify>,
    state_tx: watch::Sender<State>,
    pub(crate) config: Mutex<BreakerConfig>,
    metrics: Metrics,
    /// `name` or `name/key`, for logs.
    name: Arc<str>,
}

#[derive(Debug)]
struct Metrics {
    labels: InstanceLabels,
    successes: Counter,
    failures: Counter,
    slow: Counter,
    rejected: Counter,
    state: Gauge,
}

impl Metrics {
    fn new(labels: InstanceLabels) -> Self {
        let calls = metric_name!("breaker", "calls_total");
        Self {
            successes: metrics::counter!(calls, labels.with(labels::OUTCOME, outcome::SUCCESS)),
            failures: metrics::counter!(calls, labels.with(labels::OUTCOME, outcome::FAILURE)),
            slow: metrics::counter!(metric_name!("breaker", "slow_calls_total"), labels.to_vec()),
            rejected: metrics::counter!(calls, labels.with(labels::OUTCOME, outcome::REJECTED)),
            state: metrics::gauge!(metric_name!("breaker", "state"), labels.to_vec()),
            labels,
        }
    }
}

impl Shared {
    pub(crate) fn new(config: &BreakerConfig, labels: InstanceLabels) -> Arc<Self> {
        let origin = Origin::new();
        // Seed the open-duration jitter from the instance, so breakers
        // built together do not share a sequence, yet a test repeats.
        let seed = labels
            .to_vec()
            .iter()
            .flat_map(|l| l.value().bytes())
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        let core = Core::new(config.new_window(), &config.thresholds(), seed);
        let (state_tx, _) = watch::channel(State::Closed);
        let name: Arc<str> = labels
            .to_vec()
            .iter()
            .map(|l| l.value())
            .collect::<Vec<_>>()
            .join("/")
            .into();
        let metrics = Metrics::new(labels);
        metrics.state.set(0.0);
        Arc::new(Self {
            core,
            origin,
            mode: config.reject_mode,
            notify: Arc::new(Notify::new()),
            state_tx,
            config: Mutex::new(config.clone()),
            metrics,
            name,
        })
    }

    /// Nanoseconds since this breaker was built, on tokio's clock.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.origin.nanos()
    }

    /// Admits a call, or refuses it and counts the refusal.
    #[inline]
    pub(crate) fn acquire(&self) -> Result<Permit, BreakerOpen> {
        if let Some(permit) = self.core.try_closed() {
            return Ok(permit);
        }
        self.acquire_slow().inspect_err(|open| {
            self.core.note_rejected();
            self.metrics.rejected.increment(1);
            tracing::trace!(breaker = %self.name(), state = %open.state, "call rejected");
        })
    }

    /// Admits a call, or says why not without counting a refusal: for a
    /// caller that will wait in `poll_ready` rather than fail.
    #[inline(never)]
    pub(crate) fn acquire_slow(&self) -> Result<Permit, BreakerOpen> {
        self.core
            .acquire(&|| self.now(), &mut |t| self.on_transition(t))
            .map_err(|r| BreakerOpen {
                state: r.state,
                retry_in: r.retry_in.map(Duration::from_nanos),
            })
    }

    /// Records a finished call. `started` is when it started if the
    /// breaker times calls, else [`UNTIMED`]; the clock is read again only
    /// if needed.
    #[inline]
    pub(crate) fn record(&self, permit: Permit, verdict: Verdict, started: u64) {
        let started = (started != UNTIMED).then_some(started);
        if permit.is_untracked() {
            return;
        }
        let trial = permit.is_trial();
        let now = started.map(|_| self.now());
        let slow_nanos = self.core.slow_nanos();
        let slow = verdict != Verdict::Ignored
            && slow_nanos != 0
            && matches!((started, now), (Some(s), Some(n)) if n.saturating_sub(s) >= slow_nanos);
        match verdict {
            Verdict::Success => self.metrics.successes.increment(1),
            Verdict::Failure => self.metrics.failures.increment(1),
            Verdict::Ignored => {}
        }
        if slow {
            self.metrics.slow.increment(1);
        }
        let clock = || now.unwrap_or_else(|| self.now());
        self.core.record(permit, verdict, slow, &clock, &mut |t| {
            self.on_transition(t);
        });
        if trial {
            // A trial slot came free: a waiting caller may take it.
            self.notify.notify_waiters();
        }
    }

    pub(crate) fn force(&self, to: State) {
        self.core
            .force(to, self.now(), &mut |t| self.on_transition(t));
    }

    fn on_transition(&self, t: Transition) {
        self.state_tx.send_replace(t.to);
        self.metrics.state.set(f64::from(t.to as u8));
        metrics::counter!(
            metric_name!("breaker", "transitions_total"),
            self.metrics.labels.with(labels::STATE, t.to.as_str())
        )
        .increment(1);
        match t.open_for {
            Some(nanos) => tracing::warn!(
                breaker = %self.name(),
                from = %t.from,
                to = %t.to,
                open_for = ?Duration::from_nanos(nanos),
                "circuit breaker opened"
            ),
            None => tracing::info!(
                breaker = %self.name(),
                from = %t.from,
                to = %t.to,
                "circuit breaker changed state"
            ),
        }
        self.notify.notify_waiters();
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<State> {
        self.state_tx.subscribe()
    }
}

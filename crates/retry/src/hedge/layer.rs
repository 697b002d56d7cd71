//! The hedging layer and the state its services share.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use metrics::Counter;
use rampart_core::classify::{HttpClassifier, ResultClassifier};
use rampart_core::metric_name;
use rampart_core::metrics::InstanceLabels;
use tower_layer::Layer;

use crate::budget::RetryBudget;
use crate::hedge::config::{HedgeConfig, HedgeDelay};
use crate::hedge::histogram::LatencyHistogram;
use crate::hedge::service::Hedge;
use crate::policy::{AnyRequest, HttpRequests};

/// Wraps services in hedging: a call still unanswered after a delay is
/// sent once more, and the first good answer wins.
///
/// Built by [`HedgeConfig::build`]. `C` classifies outcomes (default: `Ok`
/// is good, `Err` a failure), `P` says which requests may be sent twice
/// (default: all). For HTTP, [`for_http`](Self::for_http) sets both.
/// Every service this layer wraps shares its settings, its latency
/// histogram, its budget and its metrics.
#[derive(Clone)]
pub struct HedgeLayer<C = ResultClassifier, P = AnyRequest> {
    shared: Arc<Shared>,
    classifier: C,
    policy: P,
}

impl HedgeLayer {
    /// A configuration to build a layer from, with production defaults.
    pub fn builder() -> HedgeConfig {
        HedgeConfig::default()
    }

    pub(crate) fn from_config(config: &HedgeConfig) -> Self {
        Self {
            shared: Arc::new(Shared::new(config)),
            classifier: ResultClassifier,
            policy: AnyRequest,
        }
    }
}

impl<C, P> HedgeLayer<C, P> {
    /// Judges outcomes with `classifier`: the first answer it does not
    /// call a failure wins.
    pub fn classifier<C2>(self, classifier: C2) -> HedgeLayer<C2, P> {
        HedgeLayer {
            shared: self.shared,
            classifier,
            policy: self.policy,
        }
    }

    /// Decides with `policy` which requests may be sent more than once
    /// (only [`ReplayPolicy::is_replayable`](crate::ReplayPolicy::is_replayable)
    /// is read; overrides are for retries).
    pub fn replay_policy<P2>(self, policy: P2) -> HedgeLayer<C, P2> {
        HedgeLayer {
            shared: self.shared,
            classifier: self.classifier,
            policy,
        }
    }

    /// For `http::Request` services: [`HttpClassifier`] (5xx, 429 and
    /// transport errors are failures) and [`HttpRequests`] (hedge only
    /// idempotent methods or requests with an `Idempotency-Key`).
    pub fn for_http(self) -> HedgeLayer<HttpClassifier, HttpRequests> {
        self.classifier(HttpClassifier::default())
            .replay_policy(HttpRequests)
    }

    /// Draws hedges from `budget` instead of the layer's own. Give it the
    /// budget of a [`RetryLayer`](crate::RetryLayer) (see
    /// [`RetryLayer::budget`](crate::RetryLayer::budget)) and retries and
    /// hedges spend from one account.
    pub fn with_budget(self, budget: RetryBudget) -> Self {
        Self {
            shared: Arc::new(Shared {
                budget,
                ..Shared::clone(&self.shared)
            }),
            classifier: self.classifier,
            policy: self.policy,
        }
    }

    /// The budget hedges are drawn from.
    pub fn budget(&self) -> RetryBudget {
        self.shared.budget.clone()
    }

    /// The delay after which a call would be hedged now: the fixed delay,
    /// or the tracked percentile (`None` until a window has counted
    /// enough calls).
    pub fn current_delay(&self) -> Option<Duration> {
        let delay = &self.shared.delay;
        delay.at(delay.clock())
    }
}

impl<S: Clone, C: Clone, P: Clone> Layer<S> for HedgeLayer<C, P> {
    type Service = Hedge<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge::new(
            inner,
            Arc::clone(&self.shared),
            self.classifier.clone(),
            self.policy.clone(),
        )
    }
}

impl<C, P> fmt::Debug for HedgeLayer<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayer")
            .field("name", &self.shared.name)
            .field("delay", &self.shared.delay)
            .field("max_hedges", &self.shared.max_hedges)
            .finish()
    }
}

// === impl Shared ===

/// The settings, histogram, budget and counters of one layer.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) max_hedges: u32,
    pub(crate) delay: Delay,
    pub(crate) budget: RetryBudget,
    pub(crate) metrics: Metrics,
}

#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) sent: Counter,
    pub(crate) won: Counter,
    pub(crate) budget_exhausted: Counter,
}

impl Shared {
    fn new(config: &HedgeConfig) -> Self {
        let labels = InstanceLabels::new(config.name.clone());
        let counter = |name: &'static str| metrics::counter!(name, labels.to_vec());
        Self {
            name: config.name.as_str().into(),
            max_hedges: config.max_hedges,
            delay: match config.delay {
                HedgeDelay::Fixed(d) => Delay::Fixed(d),
                HedgeDelay::Percentile {
                    percentile,
                    min_samples,
                    window,
                } => Delay::Tracked(Arc::new(LatencyHistogram::new(
                    percentile,
                    min_samples,
                    window,
                ))),
            },
            budget: RetryBudget::from_config(&config.budget),
            metrics: Metrics {
                sent: counter(metric_name!("hedge", "sent_total")),
                won: counter(metric_name!("hedge", "won_total")),
                budget_exhausted: counter(metric_name!("hedge", "budget_exhausted_total")),
            },
        }
    }
}

// === impl Delay ===

/// Where the hedge delay comes from.
#[derive(Debug, Clone)]
pub(crate) enum Delay {
    Fixed(Duration),
    Tracked(Arc<LatencyHistogram>),
}

impl Delay {
    /// The histogram's clock when latencies are tracked: a call's start.
    #[inline]
    pub(crate) fn clock(&self) -> Option<u64> {
        match self {
            Delay::Fixed(_) => None,
            Delay::Tracked(h) => Some(h.now()),
        }
    }

    /// The hedge delay for a call starting at `now` (from [`clock`](Self::clock)).
    #[inline]
    pub(crate) fn at(&self, now: Option<u64>) -> Option<Duration> {
        match (self, now) {
            (Delay::Fixed(d), _) => Some(*d),
            (Delay::Tracked(h), Some(now)) => h.estimate(now),
            (Delay::Tracked(_), None) => None,
        }
    }

    /// Records the latency of a call that started at `started` (from
    /// [`clock`](Self::clock)).
    pub(crate) fn record(&self, started: u64) {
        if let Delay::Tracked(h) = self {
            let now = h.now();
            h.record(now, Duration::from_nanos(now.saturating_sub(started)));
        }
    }
}

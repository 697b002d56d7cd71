//! The retry layer and the state its services share.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderName;
use metrics::Counter;
use rampart_core::classify::{HttpClassifier, ResultClassifier};
use rampart_core::metric_name;
use rampart_core::metrics::InstanceLabels;
use tower_layer::Layer;

use crate::backoff::Backoff;
use crate::budget::RetryBudget;
use crate::config::RetryConfig;
use crate::policy::{AnyRequest, HttpRequests};
use crate::service::Retry;

/// Wraps services in retries.
///
/// Built by [`RetryConfig::build`]. `C` classifies outcomes (default:
/// every `Err` may be retried), `P` says which requests may be replayed
/// (default: all). For HTTP, [`for_http`](Self::for_http) sets both.
/// Every service this layer wraps shares its settings, its budget and its
/// metrics.
#[derive(Clone)]
pub struct RetryLayer<C = ResultClassifier, P = AnyRequest> {
    pub(crate) shared: Arc<Shared>,
    classifier: C,
    policy: P,
}

impl RetryLayer {
    /// A configuration to build a layer from, with production defaults.
    pub fn builder() -> RetryConfig {
        RetryConfig::default()
    }

    pub(crate) fn from_config(config: &RetryConfig) -> Self {
        Self {
            shared: Arc::new(Shared::new(config)),
            classifier: ResultClassifier,
            policy: AnyRequest,
        }
    }
}

impl<C, P> RetryLayer<C, P> {
    /// Judges outcomes with `classifier`: only outcomes whose
    /// [`Decision`](rampart_core::Decision) allows a retry are retried.
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayer<C2, P> {
        RetryLayer {
            shared: self.shared,
            classifier,
            policy: self.policy,
        }
    }

    /// Decides with `policy` which requests may be replayed and reads their
    /// overrides.
    pub fn replay_policy<P2>(self, policy: P2) -> RetryLayer<C, P2> {
        RetryLayer {
            shared: self.shared,
            classifier: self.classifier,
            policy,
        }
    }

    /// For `http::Request` services: [`HttpClassifier`] (retry connect
    /// errors, timeouts, 429, 502, 503, 504, honouring `Retry-After`) and
    /// [`HttpRequests`] (replay only idempotent methods or requests with an
    /// `Idempotency-Key`; honour a [`RetryOverride`](crate::RetryOverride)
    /// in the extensions).
    pub fn for_http(self) -> RetryLayer<HttpClassifier, HttpRequests> {
        self.classifier(HttpClassifier::default())
            .replay_policy(HttpRequests)
    }

    /// Draws retries from `budget`, which other layers may share, instead
    /// of the layer's own.
    pub fn with_budget(self, budget: RetryBudget) -> Self {
        Self {
            shared: Arc::new(self.shared.with_budget(Some(budget))),
            classifier: self.classifier,
            policy: self.policy,
        }
    }

    /// The budget retries are drawn from, if any.
    pub fn budget(&self) -> Option<RetryBudget> {
        self.shared.budget.clone()
    }
}

impl<S, C: Clone, P: Clone> Layer<S> for RetryLayer<C, P> {
    type Service = Retry<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(
            inner,
            Arc::clone(&self.shared),
            self.classifier.clone(),
            self.policy.clone(),
        )
    }
}

impl<C, P> fmt::Debug for RetryLayer<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("name", &self.shared.name)
            .field("max_attempts", &self.shared.max_attempts)
            .field("backoff", &self.shared.backoff)
            .finish()
    }
}

// === impl Shared ===

/// The settings and counters every service of one layer shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) max_retry_after: Duration,
    pub(crate) per_try_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) deadline_header: Option<HeaderName>,
    seeds: AtomicU64,
    pub(crate) metrics: Metrics,
}

#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) attempts: Counter,
    pub(crate) retries: Counter,
    pub(crate) budget_exhausted: Counter,
}

impl Shared {
    fn new(config: &RetryConfig) -> Self {
        let labels = InstanceLabels::new(config.name.clone());
        let seed = config.seed.unwrap_or_else(rampart_core::random::fresh_seed);
        Self {
            name: config.name.as_str().into(),
            max_attempts: config.max_attempts,
            backoff: config.backoff,
            max_retry_after: config.max_retry_after,
            per_try_timeout: config.per_try_timeout,
            deadline: config.deadline,
            budget: config.budget.as_ref().map(RetryBudget::from_config),
            // Checked by `RetryConfig::validate` before the layer is built.
            deadline_header: config.deadline_header_name().ok().flatten(),
            seeds: AtomicU64::new(seed),
            metrics: Metrics {
                attempts: metrics::counter!(
                    metric_name!("retry", "attempts_total"),
                    labels.to_vec()
                ),
                retries: metrics::counter!(metric_name!("retry", "retries_total"), labels.to_vec()),
                budget_exhausted: metrics::counter!(
                    metric_name!("retry", "budget_exhausted_total"),
                    labels.to_vec()
                ),
            },
        }
    }

    fn with_budget(&self, budget: Option<RetryBudget>) -> Self {
        Self {
            name: Arc::clone(&self.name),
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            max_retry_after: self.max_retry_after,
            per_try_timeout: self.per_try_timeout,
            deadline: self.deadline,
            budget,
            deadline_header: self.deadline_header.clone(),
            seeds: AtomicU64::new(self.seeds.load(Ordering::Relaxed)),
            metrics: self.metrics.clone(),
        }
    }

    /// A seed for one request's jitter: requests that retry in the same
    /// order draw the same delays.
    pub(crate) fn next_seed(&self) -> u64 {
        self.seeds.fetch_add(1, Ordering::Relaxed)
    }
}

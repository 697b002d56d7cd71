//! [`BalanceHandle`]: the endpoints' state, read from outside the
//! balancer, and the per-endpoint statistics behind it.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge};
use rampart_core::classify::Outcome;
use rampart_core::metric_name;
use rampart_core::metrics::{InstanceLabels, labels, outcome};

use crate::balance::Shared;
use crate::ewma::EndpointLoad;

/// One endpoint's load and metric handles, shared by the balancer, its
/// response futures and its handles.
#[derive(Debug)]
pub(crate) struct EndpointStats {
    pub(crate) load: EndpointLoad,
    /// By outcome: success, failure, ignored.
    requests: [Counter; 3],
    pending: Gauge,
}

impl EndpointStats {
    pub(crate) fn new(labels: &InstanceLabels, id: &str, default_rtt_ns: f64, now: u64) -> Self {
        let labels = labels.with_key(id);
        let requests = |o: &'static str| {
            metrics::counter!(
                metric_name!("balance", "requests_total"),
                labels.with(labels::OUTCOME, o)
            )
        };
        Self {
            load: EndpointLoad::new(default_rtt_ns, now),
            requests: [
                requests(outcome::SUCCESS),
                requests(outcome::FAILURE),
                requests(outcome::IGNORED),
            ],
            pending: metrics::gauge!(metric_name!("balance", "pending"), labels.to_vec()),
        }
    }

    pub(crate) fn start(&self) {
        self.load.start();
        self.pending.increment(1.0);
    }

    /// A request ended: answered with `outcome`, or dropped (`None`).
    pub(crate) fn finish(&self, outcome: Option<Outcome>) {
        self.load.finish();
        self.pending.decrement(1.0);
        let counter = match outcome {
            Some(Outcome::Success) => &self.requests[0],
            Some(Outcome::Failure) => &self.requests[1],
            Some(Outcome::Ignored) => &self.requests[2],
            None => return,
        };
        counter.increment(1);
    }
}

/// What the handle knows of one endpoint besides its live load.
#[derive(Debug)]
pub(crate) struct EndpointEntry {
    pub(crate) stats: Arc<EndpointStats>,
    pub(crate) weight: u32,
    pub(crate) effective_weight: f64,
    /// Out of rotation until then (nanoseconds of the origin).
    pub(crate) backoff_until: u64,
    /// Ejected by outlier detection until then (nanoseconds of the origin).
    pub(crate) ejected_until: Option<u64>,
    /// Times outlier detection ejected it.
    pub(crate) ejections: u64,
}

impl EndpointEntry {
    pub(crate) fn new(stats: Arc<EndpointStats>, weight: u32) -> Self {
        Self {
            stats,
            weight,
            effective_weight: f64::from(weight),
            backoff_until: 0,
            ejected_until: None,
            ejections: 0,
        }
    }
}

/// One endpoint as a [`BalanceHandle`] reports it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EndpointStatus {
    /// The endpoint's id (its discovery key).
    pub id: String,
    /// Its configured weight (at least 1).
    pub weight: u32,
    /// The weight it is balanced by now (slow start scales it down).
    pub effective_weight: f64,
    /// Requests in flight to it.
    pub pending: u32,
    /// Its peak-EWMA latency estimate now.
    pub latency: Duration,
    /// How long it stays out of rotation after a `Retry-After`, if it is.
    pub backing_off_for: Option<Duration>,
    /// How long outlier detection keeps it ejected, if it is.
    pub ejected_for: Option<Duration>,
    /// How many times outlier detection ejected it.
    pub ejections: u64,
}

/// Reads a balancer's endpoints from anywhere (an admin endpoint, a test).
/// Cheap to clone; it does not keep the balancer alive.
#[derive(Debug, Clone)]
pub struct BalanceHandle {
    shared: Arc<Shared>,
}

impl BalanceHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Every endpoint in the set, by id.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        let now = self.shared.now_ns();
        self.shared
            .lock_table()
            .iter()
            .map(|(id, e)| EndpointStatus {
                id: id.to_string(),
                weight: e.weight,
                effective_weight: e.effective_weight,
                pending: e.stats.load.pending(),
                latency: Duration::from_nanos(
                    e.stats.load.estimate(now, self.shared.decay_ns) as u64
                ),
                backing_off_for: (e.backoff_until > now)
                    .then(|| Duration::from_nanos(e.backoff_until - now)),
                ejected_for: e
                    .ejected_until
                    .filter(|&until| until > now)
                    .map(|until| Duration::from_nanos(until - now)),
                ejections: e.ejections,
            })
            .collect()
    }
}

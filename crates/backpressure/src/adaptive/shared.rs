//! [`Shared`]: one adaptive limiter (the permit [`Core`], the algorithm,
//! counters, metric handles), the [`Permit`] of a call in flight and the
//! [`Waiting`] turn of a call queued for one.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use metrics::{Counter, Gauge};
use rampart_core::metric_name;
use rampart_core::metrics::{InstanceLabels, labels};

use crate::adaptive::config::{Algorithm, Params};
use crate::adaptive::core::{Core, Entry, SCALE, Waiter};
use crate::adaptive::gradient::Gradient2;
use crate::error::{Overloaded, Reason};

pub(crate) struct Shared {
    name: String,
    pub(crate) params: Params,
    /// The permits, the limit and the queue of waiting callers.
    core: Core,
    /// Bumped by every AIMD decrease (and every Vegas or Gradient2 step);
    /// a sample only changes the limit when its call started after the
    /// last change (at most one change per round trip, as TCP does), so
    /// that a burst of slow calls caused by one overload does not collapse
    /// the limit.
    generation: AtomicU64,
    rejected: AtomicU64,
    drops: AtomicU64,
    /// Vegas's or Gradient2's state; their samples take this one short
    /// lock (AIMD takes none).
    state: Mutex<State>,
    metrics: Metrics,
}

/// The latency-driven algorithms' state between samples.
#[derive(Debug)]
enum State {
    None,
    Vegas {
        /// The shortest latency seen since the limiter was built: the
        /// inner service's latency without queueing.
        rtt_min: Option<Duration>,
    },
    Gradient2(Gradient2),
}

struct Metrics {
    limit: Gauge,
    in_flight: Gauge,
    rejected: Counter,
    drops: Counter,
}

impl Shared {
    pub(crate) fn new(name: String, params: Params, labels: &InstanceLabels) -> Self {
        let metrics = Metrics {
            limit: metrics::gauge!(
                metric_name!("backpressure", "concurrency_limit"),
                labels.to_vec()
            ),
            in_flight: metrics::gauge!(
                metric_name!("backpressure", "concurrency_in_flight"),
                labels.to_vec()
            ),
            rejected: metrics::counter!(
                metric_name!("backpressure", "rejected_total"),
                labels.with(labels::REASON, Reason::ConcurrencyLimit.as_str())
            ),
            drops: metrics::counter!(
                metric_name!("backpressure", "concurrency_drops_total"),
                labels.to_vec()
            ),
        };
        metrics.limit.set(params.initial_limit as f64);
        let state = match params.algorithm {
            Algorithm::Aimd => State::None,
            Algorithm::Vegas => State::Vegas { rtt_min: None },
            Algorithm::Gradient2 => State::Gradient2(Gradient2::new(params.initial_limit)),
        };
        Self {
            name,
            params,
            core: Core::new(params.initial_limit as u64 * SCALE),
            generation: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            state: Mutex::new(state),
            metrics,
        }
    }

    /// `true` when a newcomer would be admitted now.
    pub(crate) fn has_room(&self) -> bool {
        self.core.has_room()
    }

    /// A permit if nobody waits and fewer than `limit` calls are in flight:
    /// one CAS loop, no lock, no allocation.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        self.core
            .try_acquire()
            .map(|in_flight| self.permit(in_flight))
    }

    /// A permit if nobody waits and one is free, or else a place at the
    /// back of the queue.
    pub(crate) fn acquire_or_wait(self: &Arc<Self>) -> Result<Permit, Waiting> {
        match self.core.acquire_or_enqueue() {
            Entry::Admitted(in_flight) => Ok(self.permit(in_flight)),
            Entry::Queued(waiter) => Err(Waiting {
                shared: self.clone(),
                waiter: Some(waiter),
            }),
        }
    }

    /// Wraps a permit the core counts already.
    fn permit(self: &Arc<Self>, in_flight: usize) -> Permit {
        self.metrics.in_flight.increment(1.0);
        Permit {
            shared: self.clone(),
            in_flight,
            generation: self.generation.load(Acquire),
        }
    }

    pub(crate) fn reject(&self) -> Overloaded {
        self.rejected.fetch_add(1, Relaxed);
        self.metrics.rejected.increment(1);
        tracing::debug!(
            name = %self.name,
            limit = self.limit(),
            in_flight = self.in_flight(),
            reason = Reason::ConcurrencyLimit.as_str(),
            "concurrency limit reached, call rejected"
        );
        Overloaded::new(Reason::ConcurrencyLimit, None)
    }

    /// Feeds one completed call to the algorithm.
    fn sample(&self, latency: Duration, failed: bool, in_flight: usize, generation: u64) {
        let dropped = failed || latency > self.params.latency_threshold;
        if dropped {
            self.drops.fetch_add(1, Relaxed);
            self.metrics.drops.increment(1);
        }
        match self.params.algorithm {
            Algorithm::Aimd => self.aimd(dropped, in_flight, generation),
            Algorithm::Vegas | Algorithm::Gradient2 => {
                self.latency_step(latency, dropped, in_flight, generation);
            }
        }
    }

    /// One Vegas or Gradient2 sample, under the algorithm lock. A sample
    /// whose call started after the last change closes a round trip and
    /// may change the limit (bumping the generation); others only feed
    /// the latency estimates.
    fn latency_step(&self, latency: Duration, dropped: bool, in_flight: usize, generation: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let closes = self.generation.load(Acquire) == generation;
        let (next, stepped) = match &mut *state {
            State::None => (None, false),
            State::Vegas { rtt_min } => {
                let next = self.vegas(rtt_min, latency, dropped, in_flight, closes);
                (next, next.is_some())
            }
            State::Gradient2(g) => {
                let next = g.sample(&self.params, latency, dropped, in_flight, closes);
                // The next round trip is measured from here on, whether the
                // limit moved or not.
                (next.map(|limit| (limit * SCALE as f64) as u64), closes)
            }
        };
        if stepped {
            self.generation.fetch_add(1, AcqRel);
        }
        if let Some(next) = next {
            self.set_limit(next);
        }
    }

    /// One Vegas step: the next fixed-point limit, if it changes.
    fn vegas(
        &self,
        rtt_min: &mut Option<Duration>,
        latency: Duration,
        dropped: bool,
        in_flight: usize,
        closes: bool,
    ) -> Option<u64> {
        let p = &self.params;
        let limit = self.limit();
        let rtt_min = match *rtt_min {
            Some(min) if latency >= min => min,
            _ => {
                *rtt_min = Some(latency);
                return None;
            }
        };
        if !closes {
            return None;
        }
        let log = (limit as f64).log10().floor().max(1.0);
        let lf = limit as f64;
        let next = if dropped {
            lf - log
        } else if in_flight * 2 < limit {
            // Too little load to learn anything.
            return None;
        } else {
            let ratio = rtt_min.as_secs_f64() / latency.as_secs_f64().max(f64::MIN_POSITIVE);
            let queue = (lf * (1.0 - ratio)).ceil();
            if queue <= log {
                lf + 6.0 * log
            } else if queue < 3.0 * log {
                lf + log
            } else if queue > 6.0 * log {
                lf - log
            } else {
                return None;
            }
        };
        let next = next.max(p.min_limit as f64).min(p.max_limit as f64) as u64;
        Some(next * SCALE)
    }

    /// Stores a fixed-point limit computed under the algorithm lock.
    fn set_limit(&self, next: u64) {
        self.core.update_limit(|_| Some(next));
        self.metrics.limit.set((next / SCALE) as f64);
    }

    /// One AIMD step, lock-free.
    fn aimd(&self, dropped: bool, in_flight: usize, generation: u64) {
        let p = &self.params;
        if dropped
            && self
                .generation
                .compare_exchange(generation, generation + 1, AcqRel, Acquire)
                .is_err()
        {
            // The limit already went down since this call started.
            return;
        }
        let (min, max) = (p.min_limit as u64 * SCALE, p.max_limit as u64 * SCALE);
        let updated = self.core.update_limit(|fp: u64| -> Option<u64> {
            let limit = fp / SCALE;
            let next = if dropped {
                // Multiplicative decrease; `as` saturates and the product
                // is below `fp`.
                ((fp as f64 * p.backoff_ratio) as u64).max(min)
            } else if in_flight as u64 * 2 >= limit {
                // Additive increase of about one call per round trip: each
                // of the `limit` calls of a round trip adds 1 / limit.
                (fp + (SCALE / limit.max(1)).max(1)).min(max)
            } else {
                return None;
            };
            (next != fp).then_some(next)
        });
        if let Some((previous, next)) = updated
            && previous / SCALE != next / SCALE
        {
            self.metrics.limit.set((next / SCALE) as f64);
        }
    }

    /// Returns a permit to the core, handing it to the next waiter if any.
    fn release(&self) {
        self.core.release();
        self.metrics.in_flight.decrement(1.0);
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn limit(&self) -> usize {
        self.core.limit()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.core.in_flight()
    }

    pub(crate) fn waiting(&self) -> usize {
        self.core.waiting()
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Relaxed)
    }

    pub(crate) fn drops(&self) -> u64 {
        self.drops.load(Relaxed)
    }

    /// Gradient2's long-term average latency, once it has one.
    pub(crate) fn long_rtt(&self) -> Option<Duration> {
        match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            State::Gradient2(g) => g.long_rtt(),
            _ => None,
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("name", &self.name)
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("waiting", &self.waiting())
            .field("params", &self.params)
            .finish()
    }
}

// === impl Permit ===

/// The right of one call to be in flight. Dropping it releases it, which
/// hands it to the first waiting caller if any.
pub(crate) struct Permit {
    shared: Arc<Shared>,
    /// Calls in flight when this one started, itself included.
    in_flight: usize,
    /// The generation when this call started.
    generation: u64,
}

impl Permit {
    /// The call completed: feeds the sample to the limit, then releases.
    pub(crate) fn complete(self, latency: Duration, failed: bool) {
        self.shared
            .sample(latency, failed, self.in_flight, self.generation);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("limiter", &self.shared.name)
            .finish()
    }
}

// === impl Waiting ===

/// A caller's place in the queue for a permit. The permit is handed over
/// in arrival order; dropping this gives up the place, or passes on the
/// permit if it had come already.
pub(crate) struct Waiting {
    shared: Arc<Shared>,
    /// `None` once the permit was taken.
    waiter: Option<Arc<Waiter>>,
}

impl Waiting {
    /// The permit once handed over; until then the task is woken when it
    /// is.
    pub(crate) fn poll_permit(&mut self, cx: &mut Context<'_>) -> Poll<Permit> {
        match &self.waiter {
            Some(waiter) if waiter.poll_granted(cx.waker()) => {
                self.waiter = None;
                Poll::Ready(self.shared.permit(self.shared.in_flight()))
            }
            Some(_) => Poll::Pending,
            None => panic!("Waiting polled after its permit was taken"),
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // Handed over but never taken: pass the permit on.
        if let Some(waiter) = self.waiter.take()
            && self.shared.core.cancel(&waiter)
        {
            self.shared.core.release();
        }
    }
}

impl fmt::Debug for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiting")
            .field("limiter", &self.shared.name)
            .field("waiter", &self.waiter)
            .finish()
    }
}

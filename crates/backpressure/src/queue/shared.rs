//! [`Shared`]: one queue's depth accounting, wake-ups, counters and metric
//! handles, and the [`Slot`] a queued call holds.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use rampart_core::metric_name;
use rampart_core::metrics::{InstanceLabels, labels};
use rampart_core::random::{SharedRng, fresh_seed};

use crate::admission::Admission;
use crate::error::{Overloaded, QueueClosed, Reason};
use crate::queue::config::QueueConfig;
use crate::queue::slots::{Reserve, Slots, Waiter};

pub(crate) struct Shared {
    name: String,
    admission: Admission,
    /// Slots for queued calls, and the line of callers waiting for one.
    slots: Slots,
    /// Random early detection above this depth, if set.
    red: Option<Red>,
    rejected: AtomicU64,
    shed: AtomicU64,
    closed: OnceLock<QueueClosed>,
    metrics: Metrics,
}

struct Metrics {
    depth: Gauge,
    rejected: Counter,
    shed: Counter,
    sojourn: Histogram,
}

/// How [`Shared::try_reserve`] refused a call.
pub(crate) enum Refused {
    /// No slot free now, or earlier callers wait for one: apply the
    /// admission.
    Busy,
    /// Shed at random above `shed_depth`.
    Shed(Overloaded),
}

impl Shared {
    /// A queue with the (validated) values of `config`.
    pub(crate) fn new(config: &QueueConfig, labels: &InstanceLabels) -> Self {
        let metrics = Metrics {
            depth: metrics::gauge!(metric_name!("backpressure", "queue_depth"), labels.to_vec()),
            rejected: metrics::counter!(
                metric_name!("backpressure", "rejected_total"),
                labels.with(labels::REASON, Reason::QueueFull.as_str())
            ),
            shed: metrics::counter!(
                metric_name!("backpressure", "rejected_total"),
                labels.with(labels::REASON, Reason::Shed.as_str())
            ),
            sojourn: metrics::histogram!(
                metric_name!("backpressure", "queue_sojourn_seconds"),
                labels.to_vec()
            ),
        };
        let capacity = config.capacity_value();
        Self {
            name: config.name_ref().to_owned(),
            admission: config.admission_value(),
            slots: Slots::new(capacity),
            red: config
                .shed_depth_value()
                .map(|threshold| Red::new(threshold, capacity, config.seed_value())),
            rejected: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            closed: OnceLock::new(),
            metrics,
        }
    }

    /// `true` when a newcomer would get a slot now: one is free and nobody
    /// waits for one.
    pub(crate) fn has_room(&self) -> bool {
        self.slots.has_room()
    }

    /// Takes a slot if one is free and nobody waits: one CAS loop, no lock.
    /// Above `shed_depth` the call may be shed instead.
    pub(crate) fn try_reserve(self: &Arc<Self>) -> Result<Slot, Refused> {
        let reserved = match &self.red {
            None => self.slots.try_reserve(|_| false),
            Some(red) => {
                let mut draw = None;
                self.slots.try_reserve(|depth| {
                    red.sheds(depth, || *draw.get_or_insert_with(|| red.draw()))
                })
            }
        };
        match reserved {
            Reserve::Taken => Ok(self.slot()),
            Reserve::Busy => Err(Refused::Busy),
            Reserve::Shed => Err(Refused::Shed(self.shed_on_depth())),
        }
    }

    /// Takes a slot if nobody waits and one is free, or joins the back of
    /// the line for the next one.
    pub(crate) fn wait_turn(self: &Arc<Self>) -> Result<Slot, Turn> {
        match self.slots.wait_turn() {
            Ok(()) => Ok(self.slot()),
            Err(waiter) => Err(Turn {
                shared: self.clone(),
                waiter: Some(waiter),
            }),
        }
    }

    /// A slot just taken from `slots`.
    fn slot(self: &Arc<Self>) -> Slot {
        self.metrics.depth.increment(1.0);
        Slot {
            shared: self.clone(),
        }
    }

    pub(crate) fn reject(&self) -> Overloaded {
        self.rejected.fetch_add(1, Relaxed);
        self.metrics.rejected.increment(1);
        tracing::debug!(
            name = %self.name,
            capacity = self.capacity(),
            depth = self.depth(),
            reason = Reason::QueueFull.as_str(),
            "queue full, call rejected"
        );
        Overloaded::new(Reason::QueueFull, None)
    }

    /// Counts a call shed on queueing delay (CoDel).
    pub(crate) fn shed(&self, sojourn: Duration) -> Overloaded {
        self.count_shed();
        tracing::debug!(
            name = %self.name,
            ?sojourn,
            depth = self.depth(),
            reason = Reason::Shed.as_str(),
            "standing queue, call shed"
        );
        Overloaded::new(Reason::Shed, None)
    }

    /// Counts a call shed on depth (random early detection).
    fn shed_on_depth(&self) -> Overloaded {
        self.count_shed();
        tracing::debug!(
            name = %self.name,
            depth = self.depth(),
            shed_depth = self.red.as_ref().map(|red| red.threshold),
            reason = Reason::Shed.as_str(),
            "queue above shed_depth, call shed"
        );
        Overloaded::new(Reason::Shed, None)
    }

    fn count_shed(&self) {
        self.shed.fetch_add(1, Relaxed);
        self.metrics.shed.increment(1);
    }

    pub(crate) fn record_sojourn(&self, sojourn: Duration) {
        self.metrics.sojourn.record(sojourn.as_secs_f64());
    }

    /// Records why the worker stopped; the first reason wins.
    pub(crate) fn close(&self, closed: QueueClosed) -> QueueClosed {
        self.closed.get_or_init(|| closed).clone()
    }

    pub(crate) fn closed(&self) -> QueueClosed {
        self.close(QueueClosed::new(None))
    }

    pub(crate) fn admission(&self) -> Admission {
        self.admission
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    pub(crate) fn shed_depth(&self) -> Option<usize> {
        self.red.as_ref().map(|red| red.threshold)
    }

    pub(crate) fn depth(&self) -> usize {
        self.slots.in_use()
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Relaxed)
    }

    pub(crate) fn shed_count(&self) -> u64 {
        self.shed.load(Relaxed)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name)
            .field("capacity", &self.capacity())
            .field("depth", &self.depth())
            .field("admission", &self.admission)
            .finish()
    }
}

// === impl Slot ===

/// One place in the queue. Dropping it frees the place, handing it to the
/// first caller waiting for one.
pub(crate) struct Slot {
    shared: Arc<Shared>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.metrics.depth.decrement(1.0);
        self.shared.slots.release();
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("queue", &self.shared.name)
            .finish()
    }
}

// === impl Turn ===

/// A caller's place in the line for a slot. Dropped before its slot came,
/// it leaves the line; dropped after, it passes the slot on.
pub(crate) struct Turn {
    shared: Arc<Shared>,
    /// `None` once the slot was handed out.
    waiter: Option<Arc<Waiter>>,
}

impl Turn {
    /// `Ready` with the slot once it is this caller's turn.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Slot> {
        match &self.waiter {
            Some(waiter) if waiter.poll_granted(cx.waker()) => {
                self.waiter = None;
                Poll::Ready(self.shared.slot())
            }
            _ => Poll::Pending,
        }
    }

    /// Leaves the line; the slot if it had been granted meanwhile.
    pub(crate) fn give_up(&mut self) -> Option<Slot> {
        let waiter = self.waiter.take()?;
        self.shared
            .slots
            .cancel(&waiter)
            .then(|| self.shared.slot())
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.give_up());
    }
}

impl fmt::Debug for Turn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Turn")
            .field("queue", &self.shared.name)
            .field("waiting", &self.waiter.is_some())
            .finish()
    }
}

// === impl Red ===

/// Random early detection on depth: a call that finds `depth` calls queued
/// would bring the queue to `depth + 1`; it is shed with probability
/// `(depth + 1 - threshold) / (capacity - threshold)`, clamped to 0..=1:
/// never while it keeps the depth at or below `threshold`, always when it
/// would fill the last slot.
struct Red {
    threshold: usize,
    capacity: usize,
    /// Shared by every caller, so a seeded queue sheds the same calls in
    /// the same order.
    rng: SharedRng,
}

impl Red {
    fn new(threshold: usize, capacity: usize, seed: Option<u64>) -> Self {
        Self {
            threshold,
            capacity,
            rng: SharedRng::new(seed.unwrap_or_else(fresh_seed)),
        }
    }

    /// 64 random bits.
    fn draw(&self) -> u64 {
        self.rng.next_u64()
    }

    /// Whether a call finding `depth` queued is shed; `draw` gives its 64
    /// random bits, asked for only above the threshold.
    fn sheds(&self, depth: usize, draw: impl FnOnce() -> u64) -> bool {
        let after = depth.saturating_add(1);
        if after <= self.threshold {
            return false;
        }
        let span = (self.capacity - self.threshold) as u128;
        let over = ((after - self.threshold) as u128).min(span);
        // shed when draw / 2^64 < over / span
        (u128::from(draw()) * span) < (over << 64)
    }
}

#[cfg(all(test, not(rampart_loom)))]
mod tests {
    use super::Red;

    /// Of 10,000 calls finding `depth` queued, how many are shed.
    fn shed_of_10k(red: &Red, depth: usize) -> usize {
        (0..10_000)
            .filter(|_| red.sheds(depth, || red.draw()))
            .count()
    }

    #[test]
    fn probability_rises_linearly_from_the_threshold_to_capacity() {
        // threshold 10, capacity 20: a call finding d queued is shed with
        // probability (d + 1 - 10) / 10.
        let red = Red::new(10, 20, Some(7));
        for depth in 0..10 {
            assert_eq!(shed_of_10k(&red, depth), 0, "depth {depth}");
        }
        for depth in 10..19 {
            let expected = (depth + 1 - 10) * 1_000;
            let got = shed_of_10k(&red, depth);
            // five standard deviations of a binomial with n = 10,000
            assert!(
                got.abs_diff(expected) <= 250,
                "depth {depth}: {got} vs {expected}"
            );
        }
        assert_eq!(shed_of_10k(&red, 19), 10_000);
        assert_eq!(shed_of_10k(&red, 25), 10_000);
    }

    #[test]
    fn the_same_seed_sheds_the_same_calls() {
        let run = |seed| {
            let red = Red::new(1, 3, Some(seed));
            (0..64)
                .map(|_| red.sheds(1, || red.draw()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }
}

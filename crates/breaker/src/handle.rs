//! Run-time access to a breaker.

use std::sync::Arc;
use std::time::Duration;

use rampart_core::ConfigError;
use tokio::sync::watch;

use crate::config::BreakerConfig;
use crate::core::State;
use crate::shared::Shared;
use crate::sync::lock;

/// A cloneable handle on one breaker: read its state and metrics, hear of
/// state changes, force a state, change its thresholds.
#[derive(Clone, Debug)]
pub struct Handle {
    shared: Arc<Shared>,
}

/// What a breaker has seen, at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsSnapshot {
    /// The state.
    pub state: State,
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// `failures / calls` (0.0 when empty).
    pub failure_rate: f64,
    /// `slow_calls / calls` (0.0 when empty).
    pub slow_call_rate: f64,
    /// Calls refused since the breaker was built.
    pub rejected: u64,
    /// While open: how long until a trial call is allowed.
    pub retry_in: Option<Duration>,
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.shared.core.state()
    }

    /// A snapshot of the window and counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        let now = self.shared.now();
        let counts = self.shared.core.counts(now);
        MetricsSnapshot {
            state: self.state(),
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
            failure_rate: counts.failure_rate(),
            slow_call_rate: counts.slow_rate(),
            rejected: self.shared.core.rejected(),
            retry_in: self
                .shared
                .core
                .open_remaining(now)
                .map(Duration::from_nanos),
        }
    }

    /// A receiver that sees every state change (the latest state; a slow
    /// reader may skip intermediate ones, as with any `watch`).
    pub fn subscribe(&self) -> watch::Receiver<State> {
        self.shared.subscribe()
    }

    /// Rejects every call until [`Handle::force_closed`].
    pub fn force_open(&self) {
        self.shared.force(State::ForcedOpen);
    }

    /// Closes the breaker and empties its window; it then runs normally.
    pub fn force_closed(&self) {
        self.shared.force(State::Closed);
    }

    /// Lets every call through and records nothing, until
    /// [`Handle::force_closed`].
    pub fn disable(&self) {
        self.shared.force(State::Disabled);
    }

    /// Lets every call through and records outcomes (metrics, rates) but
    /// never trips, until [`Handle::force_closed`].
    pub fn metrics_only(&self) {
        self.shared.force(State::MetricsOnly);
    }

    /// Applies `config`'s thresholds, open durations and half-open rules to
    /// the running breaker. The window's shape, the reject mode and the
    /// name cannot change on a running breaker: build a new layer for that.
    pub fn reconfigure(&self, config: &BreakerConfig) -> Result<(), ConfigError> {
        let mut current = lock(&self.shared.config);
        current.check_live_change(config)?;
        self.shared.core.set_thresholds(&config.thresholds());
        *current = config.clone();
        Ok(())
    }

    /// The configuration in force.
    pub fn config(&self) -> BreakerConfig {
        lock(&self.shared.config).clone()
    }
}

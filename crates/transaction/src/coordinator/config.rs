//! [`CoordinatorConfig`]: a coordinator's settings.

use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;
use rampart_retry::Backoff;
use serde::Deserialize;

/// The settings of a [`Coordinator`](super::Coordinator).
///
/// Deserializes from TOML with every field optional, durations as `"30s"`
/// (an integer is milliseconds) and unknown keys refused:
///
/// ```
/// use std::time::Duration;
/// use rampart_transaction::coordinator::CoordinatorConfig;
///
/// let config: CoordinatorConfig = serde_json::from_str(r#"{
///     "name": "orders",
///     "lease": "10s",
///     "max_attempts": 5,
///     "backoff": { "kind": "exponential", "base": "50ms", "cap": "5s" }
/// }"#).unwrap();
/// assert_eq!(config.lease_duration(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorConfig {
    pub(crate) name: String,
    pub(crate) owner: Option<String>,
    #[serde(with = "rampart_core::duration")]
    pub(crate) lease: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) max_attempts: u32,
    #[serde(with = "rampart_core::duration")]
    pub(crate) recovery_interval: Duration,
    pub(crate) recovery_batch: u32,
    #[serde(with = "rampart_core::duration")]
    pub(crate) retention: Duration,
    #[serde(with = "rampart_core::duration")]
    pub(crate) retention_interval: Duration,
    pub(crate) seed: Option<u64>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            owner: None,
            lease: Duration::from_secs(30),
            backoff: Backoff::Exponential {
                base: Duration::from_millis(100),
                cap: Duration::from_secs(10),
            },
            max_attempts: 10,
            recovery_interval: Duration::from_secs(5),
            recovery_batch: 64,
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_interval: Duration::from_secs(3600),
            seed: None,
        }
    }
}

impl CoordinatorConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The coordinator's name, put on every metric as the `name` label and
    /// on every span. Defaults to `""`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The id this coordinator holds leases under. Give each instance
    /// sharing a store its own. Defaults to a fresh random id per
    /// coordinator.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// How long a transaction stays leased to the coordinator driving it
    /// without a write or a renewal; a dead coordinator's transactions are
    /// taken over by recovery elsewhere after this. Also bounds how long a
    /// running transaction waits for an unreachable store before it stops
    /// (leaving it to recovery). Must be longer than zero. Defaults to 30 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The backoff between attempts of a branch call, and between retries
    /// of a log write while the store is unreachable. Defaults to
    /// exponential from 100 ms, capped at 10 s.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Attempts of one branch call (per drive) before the coordinator gives
    /// up on it: an action is then failed (compensate), a compensation or a
    /// step past the pivot parks the transaction in
    /// [`NeedsIntervention`](crate::model::TxState::NeedsIntervention).
    /// At least 1. Defaults to 10.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The pause between rounds of [`run_recovery`](super::Coordinator::run_recovery)
    /// when it is given no interval of its own. Must be longer than zero.
    /// Defaults to 5 s.
    pub fn recovery_interval(mut self, interval: Duration) -> Self {
        self.recovery_interval = interval;
        self
    }

    /// How many transactions one recovery round claims at most. At least
    /// 1. Defaults to 64.
    pub fn recovery_batch(mut self, batch: u32) -> Self {
        self.recovery_batch = batch;
        self
    }

    /// How long a finished transaction (committed, aborted, resolved)
    /// stays in the log after its last write before
    /// [`purge_finished`](super::Coordinator::purge_finished) deletes it.
    /// Parked and active transactions are never purged. Once purged, a
    /// transaction is unknown: [`decision`](super::Coordinator::decision)
    /// presumes abort for it. Must be longer than zero. Defaults to 7 days.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The pause between rounds of
    /// [`run_retention`](super::Coordinator::run_retention). Must be longer
    /// than zero. Defaults to 1 h.
    pub fn retention_interval(mut self, interval: Duration) -> Self {
        self.retention_interval = interval;
        self
    }

    /// The seed of the backoff jitter, so a test repeats exactly. Defaults
    /// to a fresh seed per coordinator.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The lease (see [`lease`](Self::lease)).
    pub fn lease_duration(&self) -> Duration {
        self.lease
    }

    /// Refuses a zero lease, interval, retention, batch or attempt count,
    /// and a backoff with a zero delay or a cap below its base.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero_duration("lease", self.lease)?;
        validate::non_zero_duration("recovery_interval", self.recovery_interval)?;
        validate::non_zero_duration("retention", self.retention)?;
        validate::non_zero_duration("retention_interval", self.retention_interval)?;
        validate::non_zero("max_attempts", self.max_attempts)?;
        validate::non_zero("recovery_batch", self.recovery_batch)?;
        let (base, cap) = match self.backoff {
            Backoff::Constant { delay } => (delay, delay),
            Backoff::Exponential { base, cap }
            | Backoff::FullJitter { base, cap }
            | Backoff::DecorrelatedJitter { base, cap } => (base, cap),
        };
        validate::non_zero_duration("backoff", base)?;
        if cap < base {
            return Err(ConfigError::new(
                "backoff",
                format!("cap {cap:?} is below base {base:?}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_naming_the_field() {
        assert!(CoordinatorConfig::new().validate().is_ok());
        let field = |c: CoordinatorConfig| c.validate().unwrap_err().field();
        assert_eq!(
            field(CoordinatorConfig::new().lease(Duration::ZERO)),
            "lease"
        );
        assert_eq!(
            field(CoordinatorConfig::new().max_attempts(0)),
            "max_attempts"
        );
        assert_eq!(
            field(CoordinatorConfig::new().recovery_batch(0)),
            "recovery_batch"
        );
        assert_eq!(
            field(CoordinatorConfig::new().recovery_interval(Duration::ZERO)),
            "recovery_interval"
        );
        assert_eq!(
            field(CoordinatorConfig::new().retention(Duration::ZERO)),
            "retention"
        );
        assert_eq!(
            field(CoordinatorConfig::new().retention_interval(Duration::ZERO)),
            "retention_interval"
        );
        let inverted = Backoff::Exponential {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(1),
        };
        assert_eq!(field(CoordinatorConfig::new().backoff(inverted)), "backoff");
        let unknown = serde_json::from_str::<CoordinatorConfig>(r#"{ "leese": "1s" }"#);
        assert!(unknown.is_err());
        let retention: CoordinatorConfig =
            serde_json::from_str(r#"{ "retention": "48h", "retention_interval": "10m" }"#).unwrap();
        assert_eq!(retention.retention, Duration::from_secs(2 * 24 * 3600));
        assert_eq!(retention.retention_interval, Duration::from_secs(600));
    }
}

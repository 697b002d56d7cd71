//! Retry configuration: defaults, setters, validation, TOML.

use std::time::Duration;

use http::HeaderName;
use rampart_core::error::{ConfigError, validate};
use serde::Deserialize;

use crate::backoff::Backoff;
use crate::budget::BudgetConfig;
use crate::layer::RetryLayer;

/// The most tries a layer may make per request.
pub const MAX_ATTEMPTS: u32 = 100;

/// The configuration of a retry layer.
///
/// Every setter says its default. `build()` checks the whole and names the
/// first field it refuses. The same fields load from TOML (durations as
/// `"250ms"`, `"30s"`), unknown keys refused:
///
/// ```
/// use rampart_retry::RetryConfig;
///
/// let cfg: RetryConfig = toml::from_str(r#"
///     name = "inventory"
///     max_attempts = 4
///     backoff = { kind = "decorrelated_jitter", base = "50ms", cap = "2s" }
///     per_try_timeout = "500ms"
///     deadline = "3s"
///     max_retry_after = "10s"
///     budget = { ratio = 0.1, min_per_second = 5, window = "10s" }
///     deadline_header = "x-request-timeout-ms"
/// "#).unwrap();
/// let layer = cfg.build().unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    pub(crate) name: String,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    #[serde(with = "rampart_core::duration")]
    pub(crate) max_retry_after: Duration,
    #[serde(with = "rampart_core::duration::option")]
    pub(crate) per_try_timeout: Option<Duration>,
    #[serde(with = "rampart_core::duration::option")]
    pub(crate) deadline: Option<Duration>,
    pub(crate) budget: Option<BudgetConfig>,
    pub(crate) deadline_header: Option<String>,
    pub(crate) seed: Option<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            max_attempts: 3,
            backoff: Backoff::default(),
            max_retry_after: Duration::from_secs(30),
            per_try_timeout: None,
            deadline: None,
            budget: Some(BudgetConfig::default()),
            deadline_header: None,
            seed: None,
        }
    }
}

impl RetryConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// A name for logs and metric labels. Defaults to none.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Tries in all per request, the first included (1–100; 1 means no
    /// retry). Defaults to 3.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The delay before each retry. Defaults to
    /// [`Backoff::FullJitter`] from 100 ms, capped at 10 s.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest server pushback (`Retry-After`) worth waiting for. A
    /// retry asked for later than this is not made at all: the response
    /// goes back to the caller, who is better placed to wait that long
    /// than a request in flight. Defaults to 30 s.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }

    /// Cancel a try that takes longer than `d` and count it as a retryable
    /// failure ([`TryTimeout`](crate::TryTimeout)). Defaults to none.
    pub fn per_try_timeout(mut self, d: Duration) -> Self {
        self.per_try_timeout = Some(d);
        self
    }

    /// Give up on the request `d` after the call, tries and backoffs
    /// included. A retry whose backoff would end at or past the deadline is
    /// not started. Defaults to none.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = Some(d);
        self
    }

    /// Draw retries from a budget private to this layer (for one shared by
    /// several layers, see [`RetryLayer::with_budget`]). Defaults to 20 %
    /// of first tries plus 10 per second over 10 s.
    pub fn budget(mut self, budget: BudgetConfig) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Retry without a budget: only `max_attempts` limits retries.
    /// Defaults to a budget (see [`budget`](Self::budget)).
    pub fn no_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// Tell the upstream how long each try has (the shorter of the per-try
    /// timeout and what is left of the deadline) in this header, in whole
    /// milliseconds, for HTTP requests that are not gRPC (see
    /// [`RetryLayer::for_http`]; gRPC requests always get `grpc-timeout`).
    /// A shorter value already on the request is kept. Envoy's equivalent
    /// is `x-envoy-expected-rq-timeout-ms`. Defaults to none: plain HTTP
    /// requests get no deadline header.
    pub fn deadline_header(mut self, name: impl Into<String>) -> Self {
        self.deadline_header = Some(name.into());
        self
    }

    /// Seed the jitter's random numbers, so that a test repeats. Defaults
    /// to a seed drawn per layer.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<RetryLayer, ConfigError> {
        self.validate()?;
        Ok(RetryLayer::from_config(&self))
    }

    /// Checks the configuration, naming the first field it refuses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero("max_attempts", self.max_attempts)?;
        validate::at_most(
            "max_attempts",
            u64::from(self.max_attempts),
            u64::from(MAX_ATTEMPTS),
        )?;
        match self.backoff {
            Backoff::Constant { delay } => {
                validate::non_zero_duration("backoff.delay", delay)?;
            }
            Backoff::Exponential { base, cap }
            | Backoff::FullJitter { base, cap }
            | Backoff::DecorrelatedJitter { base, cap } => {
                validate::non_zero_duration("backoff.base", base)?;
                if cap < base {
                    return Err(ConfigError::new(
                        "backoff.cap",
                        format!("must not be shorter than backoff.base ({base:?}), got {cap:?}"),
                    ));
                }
            }
        }
        if let Some(d) = self.per_try_timeout {
            validate::non_zero_duration("per_try_timeout", d)?;
        }
        if let Some(d) = self.deadline {
            validate::non_zero_duration("deadline", d)?;
        }
        if let Some(b) = &self.budget {
            b.check(true)?;
        }
        self.deadline_header_name()?;
        Ok(())
    }

    /// The deadline header as a header name, refused when it is not one.
    pub(crate) fn deadline_header_name(&self) -> Result<Option<HeaderName>, ConfigError> {
        self.deadline_header
            .as_deref()
            .map(|name| {
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    ConfigError::new(
                        "deadline_header",
                        format!("not a valid header name: {name:?}"),
                    )
                })
            })
            .transpose()
    }
}

//! [`HealthCheck`]: what to probe, how often, and how many results in a
//! row flip an instance's status.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rampart_core::ConfigError;
use rampart_core::error::validate;
use rampart_core::random::{SharedRng, fresh_seed};
use serde::Deserialize;

/// The settings of an active health check.
///
/// Deserializes from TOML with every field optional, durations as `"5s"`
/// (an integer is milliseconds) and unknown keys refused. The probe is
/// `[kind.http]` or `[kind.tcp]`:
///
/// ```
/// use std::time::Duration;
/// use rampart_discovery::health::{CheckKind, HealthCheck, HttpCheck, StatusRange};
///
/// let check: HealthCheck = toml::from_str(r#"
///     interval = "5s"
///     jitter = 0.1
///     healthy_threshold = 2
///     unhealthy_threshold = 3
///     [kind.http]
///     path = "/healthz"
///     expected_statuses = ["200-299", 304]
///     timeout = "1s"
/// "#).unwrap();
/// assert_eq!(check, HealthCheck::new()
///     .interval(Duration::from_secs(5))
///     .jitter(0.1)
///     .healthy_threshold(2)
///     .unhealthy_threshold(3)
///     .kind(CheckKind::Http(HttpCheck::new()
///         .path("/healthz")
///         .expected_statuses(vec![StatusRange::new(200, 299), StatusRange::single(304)])
///         .timeout(Duration::from_secs(1)))));
/// check.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheck {
    pub(crate) kind: CheckKind,
    #[serde(with = "rampart_core::duration")]
    pub(crate) interval: Duration,
    pub(crate) jitter: f64,
    pub(crate) healthy_threshold: u32,
    pub(crate) unhealthy_threshold: u32,
    pub(crate) seed: Option<u64>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            kind: CheckKind::default(),
            interval: Duration::from_secs(10),
            jitter: 0.1,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            seed: None,
        }
    }
}

impl HealthCheck {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// What to probe. Defaults to a TCP connect ([`TcpCheck`]'s defaults).
    pub fn kind(mut self, kind: CheckKind) -> Self {
        self.kind = kind;
        self
    }

    /// The time from the end of one probe to the start of the next,
    /// before jitter. Must be longer than zero. Defaults to 10 s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The jitter, as a fraction `j` of the interval: each wait is drawn
    /// uniformly from `interval × (1 - j) ..= interval × (1 + j)`, and the
    /// first probe of an instance waits `0 ..= interval × j`, so that
    /// instances discovered together are not probed in step. Must be
    /// within `0.0..1.0`. Defaults to 0.1.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// How many successes in a row make an instance
    /// [`Healthy`](crate::registry::HealthStatus::Healthy). Must be at
    /// least 1. Defaults to 2.
    pub fn healthy_threshold(mut self, n: u32) -> Self {
        self.healthy_threshold = n;
        self
    }

    /// How many failures in a row make an instance
    /// [`Unhealthy`](crate::registry::HealthStatus::Unhealthy). Must be at
    /// least 1. Defaults to 3.
    pub fn unhealthy_threshold(mut self, n: u32) -> Self {
        self.unhealthy_threshold = n;
        self
    }

    /// The seed of the jitter's random numbers, for repeatable runs.
    /// Defaults to none: a fresh seed per checker, so processes sharing a
    /// configuration do not probe in step.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The probe's timeout, whatever its kind.
    pub fn probe_timeout(&self) -> Duration {
        match &self.kind {
            CheckKind::Http(h) => h.timeout,
            CheckKind::Tcp(t) => t.timeout,
        }
    }

    /// The wait before an instance's first probe: `0 ..= interval × jitter`.
    pub(crate) fn first_delay(&self, rng: &SharedRng) -> Duration {
        self.interval.mul_f64(self.jitter * rng.unit())
    }

    /// The wait between two probes: `interval × (1 ± jitter)`.
    pub(crate) fn next_delay(&self, rng: &SharedRng) -> Duration {
        self.interval
            .mul_f64(1.0 + self.jitter * (2.0 * rng.unit() - 1.0))
    }

    /// A generator for the jitter, from the seed or a fresh one.
    pub(crate) fn rng(&self) -> SharedRng {
        SharedRng::new(self.seed.unwrap_or_else(fresh_seed))
    }

    /// Checks the settings, naming the first field at fault: a zero
    /// `interval`, a `jitter` outside `0.0..1.0`, a zero threshold, or a
    /// fault of the probe's kind (see [`HttpCheck::validate`] and
    /// [`TcpCheck::validate`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero_duration("interval", self.interval)?;
        validate::ratio("jitter", self.jitter)?;
        if self.jitter >= 1.0 {
            return Err(ConfigError::new(
                "jitter",
                format!("must be below 1.0, got {}", self.jitter),
            ));
        }
        validate::non_zero("healthy_threshold", self.healthy_threshold)?;
        validate::non_zero("unhealthy_threshold", self.unhealthy_threshold)?;
        match &self.kind {
            CheckKind::Http(h) => h.validate(),
            CheckKind::Tcp(t) => t.validate(),
        }
    }
}

/// What a health check probes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckKind {
    /// An HTTP/1.1 `GET` over a fresh connection; passes on an expected
    /// status.
    Http(HttpCheck),
    /// A TCP connect; passes once the connection is established.
    Tcp(TcpCheck),
}

impl Default for CheckKind {
    fn default() -> Self {
        Self::Tcp(TcpCheck::default())
    }
}

/// An HTTP check: `GET path` on the instance's address and port.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpCheck {
    pub(crate) path: String,
    pub(crate) expected_statuses: Vec<StatusRange>,
    pub(crate) host: Option<String>,
    #[serde(with = "rampart_core::duration")]
    pub(crate) timeout: Duration,
    pub(crate) max_body_bytes: usize,
}

impl Default for HttpCheck {
    fn default() -> Self {
        Self {
            path: "/health".to_owned(),
            expected_statuses: vec![StatusRange::new(200, 299)],
            host: None,
            timeout: Duration::from_secs(2),
            max_body_bytes: 64 * 1024,
        }
    }
}

impl HttpCheck {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The request path (and query). Must start with `/`. Defaults to
    /// `/health`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The statuses that pass; any other status fails. Must not be empty;
    /// each range within `100..=599`. Defaults to `200-299` (every 2xx, as
    /// Envoy and Consul do; a redirect fails unless listed).
    pub fn expected_statuses(mut self, statuses: Vec<StatusRange>) -> Self {
        self.expected_statuses = statuses;
        self
    }

    /// The `Host` header. Defaults to none: the instance's `address:port`.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The longest a probe may take, from connecting to the end of the
    /// drained body; past it the probe fails. Must be longer than zero.
    /// Defaults to 2 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How much of the response body is read (and discarded); the
    /// connection is closed after it, and a longer body does not fail the
    /// probe. Defaults to 64 KiB.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// Whether `status` passes.
    pub fn expects(&self, status: u16) -> bool {
        self.expected_statuses.iter().any(|r| r.contains(status))
    }

    /// Checks the settings, naming the field at fault: a `path` not
    /// starting with `/` or holding characters a URI may not, empty or
    /// out-of-range `expected_statuses`, a `host` that is not a valid
    /// header value, or a zero `timeout`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.path.starts_with('/') || self.path.parse::<http::Uri>().is_err() {
            return Err(ConfigError::new(
                "path",
                format!("must be a URI path starting with '/', got {:?}", self.path),
            ));
        }
        if self.expected_statuses.is_empty() {
            return Err(ConfigError::new(
                "expected_statuses",
                "must list at least one status",
            ));
        }
        for r in &self.expected_statuses {
            r.validate()?;
        }
        if let Some(host) = &self.host
            && (host.is_empty() || http::HeaderValue::from_str(host).is_err())
        {
            return Err(ConfigError::new(
                "host",
                format!("must be a non-empty header value, got {host:?}"),
            ));
        }
        validate::non_zero_duration("timeout", self.timeout)?;
        Ok(())
    }
}

/// A TCP connect check.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpCheck {
    #[serde(with = "rampart_core::duration")]
    pub(crate) timeout: Duration,
}

impl Default for TcpCheck {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
        }
    }
}

impl TcpCheck {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The longest the connect may take. Must be longer than zero.
    /// Defaults to 2 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings: a zero `timeout` is refused.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero_duration("timeout", self.timeout)?;
        Ok(())
    }
}

/// An inclusive range of HTTP statuses. Written in config as an integer
/// (`204`) or a string (`"204"`, `"200-299"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawStatus")]
pub struct StatusRange {
    min: u16,
    max: u16,
}

impl StatusRange {
    /// The statuses `min..=max`.
    pub fn new(min: u16, max: u16) -> Self {
        Self { min, max }
    }

    /// The one status `status`.
    pub fn single(status: u16) -> Self {
        Self::new(status, status)
    }

    /// Whether `status` is in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.min..=self.max).contains(&status)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.min < 100 || self.max > 599 || self.min > self.max {
            return Err(ConfigError::new(
                "expected_statuses",
                format!("{self} is not a range within 100-599"),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

impl FromStr for StatusRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("status range {s:?} is not `NNN` or `NNN-NNN`"))
        };
        match s.split_once('-') {
            Some((a, b)) => Ok(Self::new(parse(a)?, parse(b)?)),
            None => Ok(Self::single(parse(s)?)),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawStatus {
    One(u16),
    Text(String),
}

impl TryFrom<RawStatus> for StatusRange {
    type Error = String;

    fn try_from(raw: RawStatus) -> Result<Self, Self::Error> {
        match raw {
            RawStatus::One(s) => Ok(Self::single(s)),
            RawStatus::Text(s) => s.parse(),
        }
    }
}

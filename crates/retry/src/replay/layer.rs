//! The replay layer and its configuration.

use rampart_core::error::{ConfigError, validate};
use serde::Deserialize;
use tower_layer::Layer;

use crate::replay::ReplayBodyService;

/// The default replay limit: 64 KiB.
const DEFAULT_LIMIT: usize = 64 * 1024;

/// The configuration of a [`ReplayBodyLayer`].
///
/// Loads from TOML (unknown keys refused):
///
/// ```
/// use rampart_retry::ReplayBodyConfig;
///
/// let cfg: ReplayBodyConfig = toml::from_str("limit = 131072").unwrap();
/// let layer = cfg.build().unwrap();
/// assert_eq!(layer.limit(), 128 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayBodyConfig {
    pub(crate) limit: usize,
    pub(crate) all_methods: bool,
}

impl Default for ReplayBodyConfig {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            all_methods: false,
        }
    }
}

impl ReplayBodyConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The largest body, in data bytes, held in memory so its request can
    /// be replayed; a larger one is sent once and not retried (at least 1).
    /// Defaults to 64 KiB.
    pub fn limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }

    /// Buffer the body of every request, not only those the HTTP rule
    /// may replay (an idempotent method or an `Idempotency-Key`,
    /// [`rampart_core::classify::is_replayable`]): for a custom
    /// [`ReplayPolicy`](crate::ReplayPolicy) that replays more. Defaults
    /// to off: a `POST` without an `Idempotency-Key` is never retried by
    /// [`HttpRequests`](crate::HttpRequests), so its body goes through
    /// unread and unbuffered.
    pub fn all_methods(mut self, yes: bool) -> Self {
        self.all_methods = yes;
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<ReplayBodyLayer, ConfigError> {
        self.validate()?;
        Ok(ReplayBodyLayer {
            limit: self.limit,
            all_methods: self.all_methods,
        })
    }

    /// Checks the configuration, naming the field it refuses: a `limit`
    /// of 0 would make every request with a body unreplayable while still
    /// paying for the layer (leave the layer out instead).
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero("limit", self.limit as u64)?;
        Ok(())
    }
}

/// Buffers HTTP request bodies up to a limit so that a retry layer inside
/// it can replay requests whose body is not `Clone`.
///
/// Wraps a `Service<http::Request<ReplayBody<B>>>` into a
/// `Service<http::Request<B>>` for any body `B`. See the
/// [crate docs](crate#replaying-http-request-bodies) for how to stack it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayBodyLayer {
    limit: usize,
    all_methods: bool,
}

impl ReplayBodyLayer {
    /// A layer with the default limit of 64 KiB.
    pub fn new() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            all_methods: false,
        }
    }

    /// A configuration to build a layer from.
    pub fn builder() -> ReplayBodyConfig {
        ReplayBodyConfig::default()
    }

    /// The largest body, in data bytes, this layer buffers.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Default for ReplayBodyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ReplayBodyLayer {
    type Service = ReplayBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReplayBodyService::new(inner, self.limit, self.all_methods)
    }
}

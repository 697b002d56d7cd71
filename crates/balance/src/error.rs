//! The errors the balancer adds.
//!
//! | error | meaning |
//! |---|---|
//! | [`NoEndpoints`] | the endpoint set was empty (for the whole `max_wait`, if one is set) |
//! | [`NoReadyEndpoint`] | endpoints exist, but none was ready and routable (for the whole `max_wait`) |
//! | [`DiscoverError`] | the discovery stream failed; the balancer cannot follow the set |
//!
//! Each is a distinct type: find it with `err.downcast_ref::<NoEndpoints>()`
//! on the balancer's [`BoxError`]. The request was
//! never sent, so each is safe to retry elsewhere.

use std::fmt;
use std::time::Duration;

use rampart_core::BoxError;

/// The balancer had no endpoint to send the request to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoEndpoints {
    waited: Duration,
}

impl NoEndpoints {
    pub(crate) fn new(waited: Duration) -> Self {
        Self { waited }
    }

    /// How long the call waited for an endpoint to appear (zero when the
    /// balancer fails fast).
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Display for NoEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no endpoints to balance over")?;
        if !self.waited.is_zero() {
            write!(f, " (waited {:?})", self.waited)?;
        }
        Ok(())
    }
}

impl std::error::Error for NoEndpoints {}

/// Endpoints exist, but none was ready to take the request and routable
/// (not ejected, not backing off after a `Retry-After`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoReadyEndpoint {
    endpoints: usize,
    waited: Duration,
}

impl NoReadyEndpoint {
    pub(crate) fn new(endpoints: usize, waited: Duration) -> Self {
        Self { endpoints, waited }
    }

    /// How many endpoints the set had.
    pub fn endpoints(&self) -> usize {
        self.endpoints
    }

    /// How long the call waited for one to become ready.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Display for NoReadyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "none of {} endpoints is ready", self.endpoints)?;
        if !self.waited.is_zero() {
            write!(f, " (waited {:?})", self.waited)?;
        }
        Ok(())
    }
}

impl std::error::Error for NoReadyEndpoint {}

/// The discovery stream failed.
#[derive(Debug)]
pub struct DiscoverError(pub(crate) BoxError);

impl fmt::Display for DiscoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "endpoint discovery failed: {}", self.0)
    }
}

impl std::error::Error for DiscoverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

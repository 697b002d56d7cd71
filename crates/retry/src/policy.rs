//! Which requests may be sent again, and per-request overrides.

use std::time::Duration;

/// Per-request overrides of a retry layer's settings.
///
/// With [`HttpRequests`] (see [`RetryLayer::for_http`](crate::RetryLayer::for_http)),
/// put one in the request's extensions:
///
/// ```
/// use std::time::Duration;
/// use rampart_retry::RetryOverride;
///
/// let mut req = http::Request::get("/slow-report").body(()).unwrap();
/// req.extensions_mut().insert(RetryOverride {
///     max_attempts: Some(1),
///     deadline: Some(Duration::from_secs(30)),
/// });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOverride {
    /// Tries in all for this request, instead of the layer's
    /// `max_attempts` (0 is taken as 1: no retry).
    pub max_attempts: Option<u32>,
    /// The overall deadline for this request, instead of the layer's.
    pub deadline: Option<Duration>,
}

/// Decides whether a request may be replayed, and reads its overrides.
pub trait ReplayPolicy<Req> {
    /// `true` when sending `req` again is safe.
    fn is_replayable(&self, req: &Req) -> bool;

    /// Overrides carried by `req`. Defaults to none.
    fn overrides(&self, _req: &Req) -> RetryOverride {
        RetryOverride::default()
    }
}

/// Every request may be replayed (the default for non-HTTP services): the
/// classifier alone decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnyRequest;

impl<Req> ReplayPolicy<Req> for AnyRequest {
    #[inline]
    fn is_replayable(&self, _req: &Req) -> bool {
        true
    }
}

/// HTTP requests: only those with an idempotent method or an
/// `Idempotency-Key` header are replayed
/// ([`rampart_core::classify::is_replayable`]), never one marked
/// [`NotReplayable`](crate::NotReplayable) (a body over the replay limit);
/// a [`RetryOverride`] in the extensions is honoured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpRequests;

impl<B> ReplayPolicy<http::Request<B>> for HttpRequests {
    #[inline]
    fn is_replayable(&self, req: &http::Request<B>) -> bool {
        rampart_core::classify::is_replayable(req)
            && req.extensions().get::<crate::NotReplayable>().is_none()
    }

    fn overrides(&self, req: &http::Request<B>) -> RetryOverride {
        req.extensions()
            .get::<RetryOverride>()
            .copied()
            .unwrap_or_default()
    }
}

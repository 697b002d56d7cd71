//! What a breaker answers instead of an error while it is open.

use std::fmt;

use rampart_core::BoxError;

use crate::BreakerOpen;

/// Answers a call the breaker refused.
///
/// Implemented by [`NoFallback`] (the refusal becomes the error) and by
/// [`FallbackFn`], made with [`BreakerLayer::fallback`](crate::BreakerLayer::fallback).
pub trait Fallback<Req, Res> {
    /// Answers `req`, which `open` refused.
    fn fallback(&self, req: Req, open: BreakerOpen) -> Result<Res, BoxError>;
}

/// No fallback: a refused call fails with [`BreakerOpen`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFallback;

impl<Req, Res> Fallback<Req, Res> for NoFallback {
    #[inline]
    fn fallback(&self, _req: Req, open: BreakerOpen) -> Result<Res, BoxError> {
        Err(open.into())
    }
}

/// A fallback made from a closure `Fn(Req, BreakerOpen) -> Result<Res, BoxError>`.
#[derive(Clone, Copy)]
pub struct FallbackFn<F>(pub(crate) F);

impl<F> fmt::Debug for FallbackFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FallbackFn")
            .field(&std::any::type_name::<F>())
            .finish()
    }
}

impl<Req, Res, F> Fallback<Req, Res> for FallbackFn<F>
where
    F: Fn(Req, BreakerOpen) -> Result<Res, BoxError>,
{
    fn fallback(&self, req: Req, open: BreakerOpen) -> Result<Res, BoxError> {
        (self.0)(req, open)
    }
}

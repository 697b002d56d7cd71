//! When a call gives its permit back: [`ReleasePolicy`].

use crate::permit::Permit;

/// Decides how long a call's [`Permit`] outlives its response future.
///
/// When the inner service's future resolves with a response, the response
/// future hands the response and the permit to [`attach`](Self::attach),
/// whose result is what the caller receives. Dropping the permit there
/// releases it at once ([`ReleaseOnResponse`], the default); moving it into
/// the response keeps the call counted until the response is done with, as
/// [`ReleaseOnBodyEnd`](crate::ReleaseOnBodyEnd) does for HTTP bodies. When
/// the inner future fails, or the response future is dropped, the permit is
/// released without asking the policy.
pub trait ReleasePolicy<R> {
    /// What the caller receives.
    type Response;

    /// Combines the inner response with the call's permit.
    fn attach(&self, response: R, permit: Permit) -> Self::Response;
}

/// Releases the permit as soon as the inner service's future resolves.
/// The default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReleaseOnResponse;

impl<R> ReleasePolicy<R> for ReleaseOnResponse {
    type Response = R;

    #[inline]
    fn attach(&self, response: R, permit: Permit) -> R {
        drop(permit);
        response
    }
}

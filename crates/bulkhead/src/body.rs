//! Holding the permit until an HTTP response body ends:
//! [`ReleaseOnBodyEnd`] and [`PermitBody`].

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::permit::Permit;
use crate::policy::ReleasePolicy;

/// Holds a call's permit until its HTTP response body has been read to the
/// end (or dropped), so that a streaming response counts as in flight for
/// as long as it streams.
///
/// Select it with
/// [`BulkheadLayer::hold_until_body_end`](crate::BulkheadLayer::hold_until_body_end);
/// the service's response then is `http::Response<PermitBody<B>>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReleaseOnBodyEnd;

impl<B: Body> ReleasePolicy<http::Response<B>> for ReleaseOnBodyEnd {
    type Response = http::Response<PermitBody<B>>;

    fn attach(&self, response: http::Response<B>, permit: Permit) -> Self::Response {
        response.map(|body| PermitBody::new(body, permit))
    }
}

pin_project! {
    /// A response body that holds its call's bulkhead permit until the
    /// body ends: at the end of the stream, on an error frame, or when the
    /// body is dropped, whichever comes first. Frames, size hint and
    /// end-of-stream pass through unchanged.
    #[derive(Debug)]
    pub struct PermitBody<B> {
        #[pin]
        inner: B,
        permit: Option<Permit>,
    }
}

impl<B: Body> PermitBody<B> {
    /// Wraps `inner`; an already finished body releases the permit at once.
    pub(crate) fn new(inner: B, permit: Permit) -> Self {
        let permit = (!inner.is_end_stream()).then_some(permit);
        Self { inner, permit }
    }
}

impl<B> PermitBody<B> {
    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// `true` while the body still holds its permit.
    pub fn holds_permit(&self) -> bool {
        self.permit.is_some()
    }
}

impl<B: Body> Body for PermitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let done = match &frame {
            Some(Ok(_)) => this.inner.is_end_stream(),
            Some(Err(_)) | None => true,
        };
        if done {
            this.permit.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

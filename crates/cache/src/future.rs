//! [`ResponseFuture`]: the future of a cached call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use rampart_core::BoxError;

/// The response of a [`Cache`](crate::Cache) service: a cached value, the
/// result of a load (this request's or another's), or the upstream's
/// response for a bypassed request.
pub struct ResponseFuture<T> {
    inner: Inner<T>,
}

enum Inner<T> {
    /// Answered in `call` (a key the bloom filter rejected): no box.
    Ready(Option<Result<T, BoxError>>),
    Boxed(Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>),
}

impl<T> ResponseFuture<T> {
    pub(crate) fn new(inner: impl Future<Output = Result<T, BoxError>> + Send + 'static) -> Self {
        Self {
            inner: Inner::Boxed(Box::pin(inner)),
        }
    }

    pub(crate) fn ready(result: Result<T, BoxError>) -> Self {
        Self {
            inner: Inner::Ready(Some(result)),
        }
    }
}

// Neither variant is structurally pinned: the boxed future is pinned on the
// heap, the ready answer is moved out.
impl<T> Unpin for ResponseFuture<T> {}

impl<T> Future for ResponseFuture<T> {
    type Output = Result<T, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.inner {
            Inner::Ready(result) => Poll::Ready(
                result
                    .take()
                    .expect("a cache response future polled after it completed"),
            ),
            Inner::Boxed(fut) => fut.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for ResponseFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

//! [`HttpCacheBody`]: the body of a response through the HTTP adapter.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use rampart_core::BoxError;

/// The body of a response through [`HttpCache`](crate::http::HttpCache):
///
/// - **whole**: a hit, or a body collected within `max_body_bytes`; held
///   in memory, with an exact size hint;
/// - **streamed**: a body not collected (the response is not storable, or
///   is known to be over the limit), or one that grew past the limit
///   while being collected: the bytes read so far, then the rest of the
///   upstream body as it arrives, once. Never truncated.
///
/// An error of the upstream body is passed on as this body's error, after
/// the bytes read before it.
pub struct HttpCacheBody<B> {
    kind: Kind<B>,
}

enum Kind<B> {
    Whole {
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
    Streamed {
        prefix: Option<Bytes>,
        body: Pin<Box<B>>,
    },
    Failed {
        prefix: Option<Bytes>,
        error: Option<BoxError>,
    },
}

impl<B> HttpCacheBody<B> {
    /// A body held whole.
    pub(crate) fn full(data: Bytes) -> Self {
        Self::whole(data, None)
    }

    pub(crate) fn whole(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: Kind::Whole {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }

    /// `prefix`, then the rest of `body`.
    pub(crate) fn streamed(prefix: Bytes, body: Pin<Box<B>>) -> Self {
        Self {
            kind: Kind::Streamed {
                prefix: (!prefix.is_empty()).then_some(prefix),
                body,
            },
        }
    }

    /// `prefix`, then `error`.
    pub(crate) fn failed(prefix: Bytes, error: BoxError) -> Self {
        Self {
            kind: Kind::Failed {
                prefix: (!prefix.is_empty()).then_some(prefix),
                error: Some(error),
            },
        }
    }

    /// The body's bytes when it is held whole, not yet read and without
    /// trailers: what a cache may store.
    pub(crate) fn storable(&self) -> Option<Bytes> {
        match &self.kind {
            Kind::Whole {
                data,
                trailers: None,
            } => Some(data.clone().unwrap_or_default()),
            _ => None,
        }
    }

    /// `true` when the whole body is in memory (a hit, or a body collected
    /// within the limit); `false` when it streams from the upstream.
    pub fn is_whole(&self) -> bool {
        matches!(self.kind, Kind::Whole { .. })
    }
}

impl<B> Body for HttpCacheBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Whole { data, trailers } => Poll::Ready(
                data.take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
            Kind::Streamed { prefix, body } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                body.as_mut().poll_frame(cx).map(|frame| {
                    frame.map(|frame| match frame {
                        Ok(frame) => Ok(frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))),
                        Err(e) => Err(e.into()),
                    })
                })
            }
            Kind::Failed { prefix, error } => Poll::Ready(match prefix.take() {
                Some(prefix) => Some(Ok(Frame::data(prefix))),
                None => error.take().map(Err),
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Whole { data, trailers } => data.is_none() && trailers.is_none(),
            Kind::Streamed { prefix, body } => prefix.is_none() && body.is_end_stream(),
            Kind::Failed { prefix, error } => prefix.is_none() && error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let prefix_len = |prefix: &Option<Bytes>| prefix.as_ref().map_or(0, |p| p.len() as u64);
        match &self.kind {
            Kind::Whole { data, .. } => SizeHint::with_exact(prefix_len(data)),
            Kind::Streamed { prefix, body } => {
                let (rest, read) = (body.size_hint(), prefix_len(prefix));
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(read));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(read));
                }
                hint
            }
            Kind::Failed { prefix, .. } => {
                let mut hint = SizeHint::new();
                hint.set_lower(prefix_len(prefix));
                hint
            }
        }
    }
}

impl<B> fmt::Debug for HttpCacheBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Whole { .. } => "whole",
            Kind::Streamed { .. } => "streamed",
            Kind::Failed { .. } => "failed",
        };
        f.debug_struct("HttpCacheBody")
            .field("kind", &kind)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that yields one chunk, then fails.
    struct Breaks(Option<Bytes>);

    impl Body for Breaks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(Some(match self.0.take() {
                Some(data) => Ok(Frame::data(data)),
                None => Err("reset".into()),
            }))
        }
    }

    fn poll<B: Body<Data = Bytes, Error = BoxError> + Unpin>(
        body: &mut B,
    ) -> Option<Result<Frame<Bytes>, BoxError>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(body).poll_frame(&mut cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => panic!("pending"),
        }
    }

    fn data(frame: Option<Result<Frame<Bytes>, BoxError>>) -> Bytes {
        frame.unwrap().unwrap().into_data().unwrap()
    }

    #[test]
    fn whole_bodies_yield_data_then_trailers_with_exact_hints() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", "1".parse().unwrap());
        let mut body = HttpCacheBody::<Breaks>::whole(Bytes::from_static(b"abc"), Some(trailers));
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(body.storable().is_none(), "trailers are not stored");
        assert_eq!(data(poll(&mut body)), "abc");
        let frame = poll(&mut body).unwrap().unwrap();
        assert_eq!(frame.into_trailers().unwrap()["x-sum"], "1");
        assert!(body.is_end_stream() && poll(&mut body).is_none());
        let empty = HttpCacheBody::<Breaks>::full(Bytes::new());
        assert!(empty.is_end_stream());
        assert_eq!(empty.storable(), Some(Bytes::new()));
    }

    #[test]
    fn streamed_bodies_yield_the_prefix_then_the_rest() {
        let rest = Box::pin(Breaks(Some(Bytes::from_static(b"def"))));
        let mut body = HttpCacheBody::streamed(Bytes::from_static(b"abc"), rest);
        assert!(!body.is_whole() && body.storable().is_none());
        assert_eq!(body.size_hint().lower(), 3);
        assert_eq!(data(poll(&mut body)), "abc");
        assert_eq!(data(poll(&mut body)), "def");
        assert_eq!(poll(&mut body).unwrap().unwrap_err().to_string(), "reset");
    }

    #[test]
    fn failed_bodies_yield_the_prefix_then_the_error() {
        let mut body = HttpCacheBody::<Breaks>::failed(Bytes::from_static(b"ab"), "reset".into());
        assert_eq!(body.size_hint().lower(), 2);
        assert_eq!(data(poll(&mut body)), "ab");
        assert_eq!(poll(&mut body).unwrap().unwrap_err().to_string(), "reset");
        assert!(body.is_end_stream() && poll(&mut body).is_none());
    }
}

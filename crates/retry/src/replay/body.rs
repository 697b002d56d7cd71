//! The body the replay layer hands on: held whole, or streamed once.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use rampart_core::BoxError;

use crate::replay::BodyTaken;

/// One frame of a buffered body, kept in the order it came.
#[derive(Debug, Clone)]
pub(crate) enum Chunk {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl Chunk {
    fn frame(&self) -> Frame<Bytes> {
        match self {
            Chunk::Data(data) => Frame::data(data.clone()),
            Chunk::Trailers(trailers) => Frame::trailers(trailers.clone()),
        }
    }

    fn len(&self) -> u64 {
        match self {
            Chunk::Data(data) => data.len() as u64,
            Chunk::Trailers(_) => 0,
        }
    }
}

/// A request body made by [`ReplayBodyService`](crate::ReplayBodyService):
/// `Clone` whatever the original body is.
///
/// - A body within the limit was read whole before the request was sent.
///   It is held in memory (data frames and trailers, in order), and every
///   clone is the whole body from its first byte, byte-identical, with an
///   exact size hint.
/// - A body over the limit is sent once: the frames already read, then
///   the rest of the original body, never truncated. Its request carries
///   [`NotReplayable`](crate::NotReplayable). Its copies share the one
///   original: the first copy polled takes it, and any other copy yields
///   [`BodyTaken`] as its first frame instead of a partial body.
pub struct ReplayBody<B> {
    kind: Kind<B>,
}

enum Kind<B> {
    Empty,
    Buffered {
        chunks: Arc<[Chunk]>,
        next: usize,
    },
    Streaming {
        once: Arc<Once<B>>,
        /// The body, once this copy has taken it.
        taken: Option<Rest<B>>,
    },
}

/// An over-limit body, shared by its copies until one takes it.
struct Once<B> {
    /// The size hint of the whole body, before anything was taken.
    hint: SizeHint,
    rest: Mutex<Option<Rest<B>>>,
}

/// The frames read before the limit was passed, then the original body.
struct Rest<B> {
    read: VecDeque<Chunk>,
    body: Pin<Box<B>>,
}

impl<B: Body> ReplayBody<B> {
    pub(crate) fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    pub(crate) fn buffered(chunks: Vec<Chunk>) -> Self {
        Self {
            kind: Kind::Buffered {
                chunks: chunks.into(),
                next: 0,
            },
        }
    }

    pub(crate) fn streaming(read: Vec<Chunk>, body: Pin<Box<B>>) -> Self {
        let read_len = read.iter().map(Chunk::len).sum();
        let hint = offset(body.size_hint(), read_len);
        let rest = Rest {
            read: read.into(),
            body,
        };
        Self {
            kind: Kind::Streaming {
                once: Arc::new(Once {
                    hint,
                    rest: Mutex::new(Some(rest)),
                }),
                taken: None,
            },
        }
    }

    /// `true` when every copy of this body carries all of it: the body was
    /// within the limit.
    pub fn is_replayable(&self) -> bool {
        !matches!(self.kind, Kind::Streaming { .. })
    }
}

impl<B> Body for ReplayBody<B>
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
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Buffered { chunks, next } => {
                let Some(chunk) = chunks.get(*next) else {
                    return Poll::Ready(None);
                };
                *next += 1;
                Poll::Ready(Some(Ok(chunk.frame())))
            }
            Kind::Streaming { once, taken } => {
                let rest = match taken {
                    Some(rest) => rest,
                    None => match once.take() {
                        Some(rest) => taken.insert(rest),
                        None => {
                            this.kind = Kind::Empty;
                            return Poll::Ready(Some(Err(BodyTaken.into())));
                        }
                    },
                };
                if let Some(chunk) = rest.read.pop_front() {
                    return Poll::Ready(Some(Ok(chunk.frame())));
                }
                rest.body.as_mut().poll_frame(cx).map(|frame| {
                    frame.map(|frame| {
                        frame
                            .map(|frame| {
                                frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
                            })
                            .map_err(Into::into)
                    })
                })
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Buffered { chunks, next } => *next >= chunks.len(),
            Kind::Streaming { taken, .. } => taken
                .as_ref()
                .is_some_and(|rest| rest.read.is_empty() && rest.body.is_end_stream()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Buffered { chunks, next } => {
                SizeHint::with_exact(chunks.iter().skip(*next).map(Chunk::len).sum())
            }
            Kind::Streaming { once, taken } => match taken {
                Some(rest) => offset(
                    rest.body.size_hint(),
                    rest.read.iter().map(Chunk::len).sum(),
                ),
                None => once.hint,
            },
        }
    }
}

impl<B> Once<B> {
    fn take(&self) -> Option<Rest<B>> {
        self.rest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// `hint` moved up by `n` bytes.
fn offset(hint: SizeHint, n: u64) -> SizeHint {
    let mut out = SizeHint::new();
    out.set_lower(hint.lower().saturating_add(n));
    if let Some(upper) = hint.upper() {
        out.set_upper(upper.saturating_add(n));
    }
    out
}

impl<B> Clone for ReplayBody<B> {
    /// A buffered body's clone is the whole body; an over-limit body's
    /// clone gets the body only if no other copy has taken it.
    fn clone(&self) -> Self {
        let kind = match &self.kind {
            Kind::Empty => Kind::Empty,
            Kind::Buffered { chunks, .. } => Kind::Buffered {
                chunks: Arc::clone(chunks),
                next: 0,
            },
            Kind::Streaming { once, .. } => Kind::Streaming {
                once: Arc::clone(once),
                taken: None,
            },
        };
        Self { kind }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Empty => "empty",
            Kind::Buffered { .. } => "buffered",
            Kind::Streaming { .. } => "streaming",
        };
        f.debug_struct("ReplayBody").field("kind", &kind).finish()
    }
}

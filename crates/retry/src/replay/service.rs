//! The service that buffers request bodies, and its response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http::request::Parts;
use http::{Request, header};
use http_body::Body;
use pin_project_lite::pin_project;
use rampart_core::BoxError;
use tower_service::Service;

use crate::replay::body::Chunk;
use crate::replay::{BodyReadError, NotReplayable, ReplayBody};

/// Buffers each request body up to a limit so the request can be replayed;
/// made by [`ReplayBodyLayer`](crate::ReplayBodyLayer).
///
/// `poll_ready` forwards the inner service's readiness. A call whose body
/// must be read first keeps the inner service it was driven ready on (and
/// leaves a clone here), and calls it once the body is buffered or known
/// to be over the limit.
#[derive(Clone)]
pub struct ReplayBodyService<S> {
    inner: S,
    limit: usize,
    /// Buffer requests the HTTP rule would not replay too.
    all_methods: bool,
}

impl<S> ReplayBodyService<S> {
    pub(crate) fn new(inner: S, limit: usize, all_methods: bool) -> Self {
        Self {
            inner,
            limit,
            all_methods,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B> Service<Request<B>> for ReplayBodyService<S>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ReplayFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let never_replayed = !self.all_methods && !rampart_core::classify::is_replayable(&req);
        let (mut parts, body) = req.into_parts();
        if body.is_end_stream() {
            let req = Request::from_parts(parts, ReplayBody::empty());
            return ReplayFuture::calling(self.inner.call(req));
        }
        if never_replayed
            || parts.extensions.get::<NotReplayable>().is_some()
            || over_limit(&parts, &body, self.limit)
        {
            // Known to be too large, or never to be replayed: not read here.
            parts.extensions.insert(NotReplayable);
            let req = Request::from_parts(parts, ReplayBody::streaming(Vec::new(), Box::pin(body)));
            return ReplayFuture::calling(self.inner.call(req));
        }
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        ReplayFuture {
            state: State::Buffering {
                buffer: Some(Buffer {
                    service,
                    parts,
                    body: Box::pin(body),
                    chunks: Vec::new(),
                    len: 0,
                    limit: self.limit,
                }),
            },
        }
    }
}

/// Whether the headers or the body's size hint already say the body is
/// over the limit.
fn over_limit<B: Body>(parts: &Parts, body: &B, limit: usize) -> bool {
    let limit = limit as u64;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    body.size_hint().lower() > limit || declared.is_some_and(|n| n > limit)
}

impl<S: fmt::Debug> fmt::Debug for ReplayBodyService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBodyService")
            .field("inner", &self.inner)
            .field("limit", &self.limit)
            .finish()
    }
}

// === impl ReplayFuture ===

pin_project! {
    /// The future of a call through [`ReplayBodyService`]: reads the body
    /// up to the limit, then calls the inner service and waits for it.
    pub struct ReplayFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<S, B, S::Future>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, F> {
        Buffering { buffer: Option<Buffer<S, B>> },
        Calling { #[pin] fut: F },
    }
}

/// A call whose body is being read.
struct Buffer<S, B> {
    service: S,
    parts: Parts,
    body: Pin<Box<B>>,
    chunks: Vec<Chunk>,
    len: usize,
    limit: usize,
}

/// How reading a body ended.
enum Read {
    /// The whole body is in `chunks`.
    Whole,
    /// Past the limit: `chunks` holds the frames read so far.
    OverLimit,
}

impl<S, B> Buffer<S, B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<Read, BodyReadError>> {
        loop {
            let frame = match ready!(self.body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(Ok(Read::Whole)),
                Some(Err(e)) => {
                    return Poll::Ready(Err(BodyReadError {
                        buffered: self.len,
                        source: e.into(),
                    }));
                }
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(mut data) => {
                    let data = data.copy_to_bytes(data.remaining());
                    self.len = self.len.saturating_add(data.len());
                    self.chunks.push(Chunk::Data(data));
                    if self.len > self.limit {
                        return Poll::Ready(Ok(Read::OverLimit));
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        self.chunks.push(Chunk::Trailers(trailers));
                    }
                }
            }
            if self.body.is_end_stream() {
                return Poll::Ready(Ok(Read::Whole));
            }
        }
    }

    /// The request with its body held whole, or streamed once.
    fn into_request(self, read: Read) -> (S, Request<ReplayBody<B>>) {
        let Buffer {
            service,
            mut parts,
            body,
            chunks,
            limit,
            ..
        } = self;
        let body = match read {
            Read::Whole => ReplayBody::buffered(chunks),
            Read::OverLimit => {
                tracing::debug!(limit, "request body over the replay limit: sent once");
                parts.extensions.insert(NotReplayable);
                ReplayBody::streaming(chunks, body)
            }
        };
        (service, Request::from_parts(parts, body))
    }
}

impl<S, B> ReplayFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn calling(fut: S::Future) -> Self {
        Self {
            state: State::Calling { fut },
        }
    }
}

impl<S, B> Future for ReplayFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { fut } => return fut.poll(cx).map_err(Into::into),
                StateProj::Buffering { buffer } => {
                    let pending = buffer
                        .as_mut()
                        .expect("ReplayFuture polled after completion");
                    let read = ready!(pending.poll_read(cx));
                    let pending = buffer.take().expect("present while buffering");
                    let (mut service, req) = pending.into_request(read?);
                    let fut = service.call(req);
                    this.state.set(State::Calling { fut });
                }
            }
        }
    }
}

impl<S, B> fmt::Debug for ReplayFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Buffering { .. } => "buffering",
            State::Calling { .. } => "calling",
        };
        f.debug_struct("ReplayFuture")
            .field("state", &state)
            .finish()
    }
}

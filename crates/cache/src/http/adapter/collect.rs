//! [`Collect`]: the service under the generic cache that judges each
//! upstream response and collects the body of a storable one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, response};
use http_body::Body;
use pin_project_lite::pin_project;
use rampart_core::BoxError;
use tower_service::Service;

use crate::http::adapter::body::HttpCacheBody;
use crate::http::adapter::stored::{Dated, WallClock};
use crate::http::cache_control::CacheControl;
use crate::http::{BodyPlan, HttpCachePolicy, RequestFacts, Storability};

/// Wraps the upstream: a response the policy would store gets its
/// [`Dated`] verdict in its extensions and its body collected up to
/// `max_body_bytes`; every other response streams through untouched.
#[derive(Debug, Clone)]
pub(crate) struct Collect<S> {
    inner: S,
    policy: Arc<HttpCachePolicy>,
    clock: WallClock,
}

impl<S> Collect<S> {
    pub(crate) fn new(inner: S, policy: Arc<HttpCachePolicy>, clock: WallClock) -> Self {
        Self {
            inner,
            policy,
            clock,
        }
    }
}

/// The facts of a request whose response may be stored: a `GET` or
/// `HEAD` without `Cache-Control: no-store`.
fn storable_request<B>(req: &Request<B>) -> Option<RequestFacts> {
    let method = req.method();
    let candidate = (method == Method::GET || method == Method::HEAD)
        && !CacheControl::from_headers(req.headers()).no_store;
    candidate.then(|| RequestFacts::from(req))
}

impl<S, B, RB> Service<Request<B>> for Collect<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Body,
    RB::Error: Into<BoxError>,
{
    type Response = Response<HttpCacheBody<RB>>;
    type Error = S::Error;
    type Future = CollectFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let facts = storable_request(&req);
        CollectFuture {
            fut: self.inner.call(req),
            facts,
            policy: Arc::clone(&self.policy),
            clock: self.clock,
            collecting: None,
        }
    }
}

pin_project! {
    /// Waits for the upstream's response, then collects its body if it
    /// is to be stored.
    pub(crate) struct CollectFuture<F, RB> {
        #[pin]
        fut: F,
        facts: Option<RequestFacts>,
        policy: Arc<HttpCachePolicy>,
        clock: WallClock,
        collecting: Option<Collecting<RB>>,
    }
}

/// A storable response whose body is being read.
struct Collecting<RB> {
    parts: response::Parts,
    body: Pin<Box<RB>>,
    read: BytesMut,
    limit: usize,
}

/// How collecting a body ended.
enum Collected {
    /// All of it is in `read`, and these trailers, if any.
    Whole(Option<HeaderMap>),
    /// `read` grew past the limit.
    OverLimit,
    /// The body failed after `read`.
    Failed(BoxError),
}

impl<F, RB, E> Future for CollectFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Body,
    RB::Error: Into<BoxError>,
{
    type Output = Result<Response<HttpCacheBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this.collecting.is_none() {
            let res = ready!(this.fut.poll(cx))?;
            let (mut parts, body) = res.into_parts();
            let body = Box::pin(body);
            let Some(facts) = *this.facts else {
                return Poll::Ready(Ok(streamed(parts, body)));
            };
            let now = this.clock.now();
            let verdict = this.policy.freshness(facts, &parts, now);
            let Storability::Store {
                ttl,
                no_stale,
                upstream_age,
            } = verdict
            else {
                if let Storability::DoNotStore(reason) = verdict {
                    tracing::trace!(%reason, "response not stored");
                }
                return Poll::Ready(Ok(streamed(parts, body)));
            };
            let plan = this
                .policy
                .body_plan(facts, &parts, body.size_hint().lower());
            let BodyPlan::Collect { limit } = plan else {
                tracing::debug!("response body over max_body_bytes: streamed, not stored");
                return Poll::Ready(Ok(streamed(parts, body)));
            };
            parts.extensions.insert(Dated {
                stored_at: now,
                ttl,
                no_stale,
                upstream_age,
            });
            *this.collecting = Some(Collecting {
                parts,
                body,
                read: BytesMut::new(),
                limit,
            });
        }
        let collecting = this.collecting.as_mut().expect("set above");
        let collected = ready!(collecting.poll_collect(cx));
        let collecting = this.collecting.take().expect("set above");
        Poll::Ready(Ok(collecting.finish(collected)))
    }
}

fn streamed<RB>(parts: response::Parts, body: Pin<Box<RB>>) -> Response<HttpCacheBody<RB>> {
    Response::from_parts(parts, HttpCacheBody::streamed(Bytes::new(), body))
}

impl<RB> Collecting<RB>
where
    RB: Body,
    RB::Error: Into<BoxError>,
{
    fn poll_collect(&mut self, cx: &mut Context<'_>) -> Poll<Collected> {
        loop {
            if self.body.is_end_stream() {
                return Poll::Ready(Collected::Whole(None));
            }
            let frame = match ready!(self.body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(Collected::Whole(None)),
                Some(Err(e)) => return Poll::Ready(Collected::Failed(e.into())),
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(data) => {
                    self.read.put(data);
                    if self.read.len() > self.limit {
                        return Poll::Ready(Collected::OverLimit);
                    }
                }
                // Trailers come last.
                Err(frame) => return Poll::Ready(Collected::Whole(frame.into_trailers().ok())),
            }
        }
    }

    fn finish(self, collected: Collected) -> Response<HttpCacheBody<RB>> {
        let read = self.read.freeze();
        let body = match collected {
            Collected::Whole(trailers) => HttpCacheBody::whole(read, trailers),
            Collected::OverLimit => {
                tracing::debug!(
                    limit = self.limit,
                    "response body grew past max_body_bytes: streamed, not stored"
                );
                HttpCacheBody::streamed(read, self.body)
            }
            Collected::Failed(error) => HttpCacheBody::failed(read, error),
        };
        Response::from_parts(self.parts, body)
    }
}

//! Replaying HTTP requests whose body is not `Clone`: buffered up to the
//! limit and retried byte-identical; over it, sent once and not retried.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use proptest::prelude::*;
use rampart_core::BoxError;
use rampart_retry::{
    Backoff, BodyReadError, BodyTaken, HttpRequests, NotReplayable, ReplayBody, ReplayBodyConfig,
    ReplayBodyLayer, ReplayPolicy, RetryConfig,
};
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_test::mock;

/// A streaming request body that is deliberately not `Clone`: its chunks,
/// one per poll with a `Pending` before each, then its trailers or an
/// error.
struct Source {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    fail: Option<&'static str>,
    /// Report an exact size hint (otherwise unknown).
    exact: bool,
    pending_next: bool,
    polled: Arc<AtomicBool>,
}

impl Source {
    fn new(chunks: &[&[u8]]) -> Self {
        Self {
            chunks: chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect(),
            trailers: None,
            fail: None,
            exact: false,
            pending_next: true,
            polled: Arc::new(AtomicBool::new(false)),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        self.chunks.iter().flatten().copied().collect()
    }
}

impl Body for Source {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.polled.store(true, Ordering::SeqCst);
        if std::mem::replace(&mut self.pending_next, false) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.pending_next = true;
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(self.fail.take().map(|e| Err(e.into())))
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
        } else {
            SizeHint::default()
        }
    }
}

/// What the upstream received on one try.
#[derive(Debug, Clone, PartialEq)]
struct Received {
    data: Vec<u8>,
    trailers: Option<HeaderMap>,
}

#[derive(Clone, Default)]
struct Upstream {
    calls: Arc<Mutex<usize>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Upstream {
    fn calls(&self) -> usize {
        *self.calls.lock().unwrap()
    }
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

type RespFut = Pin<Box<dyn Future<Output = Result<Response<()>, BoxError>> + Send>>;

/// An upstream that reads each request's whole body, records it and
/// answers from `statuses` in turn (then 200).
fn upstream(
    statuses: &[u16],
) -> (
    impl Service<
        Request<ReplayBody<Source>>,
        Response = Response<()>,
        Error = BoxError,
        Future = RespFut,
    > + Clone
    + use<>,
    Upstream,
) {
    let log = Upstream::default();
    let seen = log.clone();
    let script = Arc::new(Mutex::new(
        statuses.iter().copied().collect::<VecDeque<_>>(),
    ));
    let svc = service_fn(move |req: Request<ReplayBody<Source>>| -> RespFut {
        *seen.calls.lock().unwrap() += 1;
        let status = script.lock().unwrap().pop_front().unwrap_or(200);
        let seen = seen.clone();
        Box::pin(async move {
            let collected = req.into_body().collect().await?;
            let trailers = collected.trailers().cloned();
            let data = collected.to_bytes().to_vec();
            seen.received
                .lock()
                .unwrap()
                .push(Received { data, trailers });
            Ok(Response::builder().status(status).body(()).unwrap())
        })
    });
    (svc, log)
}

/// The stack under test: replay outside, retry inside.
fn stack<S>(
    limit: usize,
    max_attempts: u32,
    upstream: S,
) -> impl Service<Request<Source>, Response = Response<()>, Error = BoxError>
where
    S: Service<Request<ReplayBody<Source>>, Response = Response<()>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    ServiceBuilder::new()
        .layer(ReplayBodyConfig::new().limit(limit).build().unwrap())
        .layer(
            RetryConfig::new()
                .no_budget()
                .max_attempts(max_attempts)
                .backoff(Backoff::Constant {
                    delay: Duration::from_millis(10),
                })
                .seed(7)
                .build()
                .unwrap()
                .for_http(),
        )
        .service(upstream)
}

fn put(body: Source) -> Request<Source> {
    Request::put("/items/1").body(body).unwrap()
}

fn checksum() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("5e2f"));
    trailers
}

// === within the limit: retried byte-identical ===

#[tokio::test(start_paused = true)]
async fn a_streaming_body_within_the_limit_is_retried_byte_identical() {
    let mut body = Source::new(&[b"hello, ", b"streaming ", b"", b"world"]);
    body.trailers = Some(checksum());
    let sent = body.bytes();
    let (svc, log) = upstream(&[503, 200]);
    let resp = stack(64 * 1024, 3, svc).oneshot(put(body)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the retry answered");
    assert_eq!(log.calls(), 2);
    let expected = Received {
        data: sent,
        trailers: Some(checksum()),
    };
    assert_eq!(log.received(), [expected.clone(), expected]);
}

#[tokio::test(start_paused = true)]
async fn a_body_of_exactly_the_limit_is_retried() {
    let body = Source::new(&[b"0123456789", b"abcdef"]);
    let (svc, log) = upstream(&[503, 503]);
    let resp = stack(16, 2, svc).oneshot(put(body)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(log.calls(), 2);
}

// === over the limit: sent once, whole, not retried ===

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_sent_once_whole_and_not_retried() {
    let chunks: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 10]).collect();
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let mut body = Source::new(&refs);
    body.trailers = Some(checksum());
    let sent = body.bytes();
    let (svc, log) = upstream(&[503, 200]);
    let resp = stack(16, 3, svc).oneshot(put(body)).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the 503 goes back: no retry"
    );
    assert_eq!(log.calls(), 1);
    assert_eq!(
        log.received(),
        [Received {
            data: sent,
            trailers: Some(checksum()),
        }],
        "every byte, in order, and the trailers"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_marked_not_replayable_is_neither_buffered_nor_retried() {
    let body = Source::new(&[b"small"]);
    let polled = Arc::clone(&body.polled);
    let mut req = put(body);
    req.extensions_mut().insert(NotReplayable);
    let (svc, log) = upstream(&[503, 200]);
    let read_at_call = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&read_at_call);
    let watched = service_fn(move |req: Request<ReplayBody<Source>>| {
        seen.lock().unwrap().push(polled.load(Ordering::SeqCst));
        svc.clone().oneshot(req)
    });
    let resp = stack(64 * 1024, 3, watched).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(log.calls(), 1);
    assert_eq!(*read_at_call.lock().unwrap(), [false], "not buffered first");
    assert_eq!(log.received()[0].data, b"small");
}

#[tokio::test]
async fn a_declared_size_over_the_limit_calls_the_service_before_reading_the_body() {
    // Once by `Content-Length`, once by the body's exact size hint.
    for exact in [false, true] {
        let mut body = Source::new(&[b"0123456789", b"0123456789"]);
        body.exact = exact;
        let sent = body.bytes();
        let polled = Arc::clone(&body.polled);
        let req = if exact {
            put(body)
        } else {
            Request::put("/upload")
                .header("content-length", sent.len())
                .body(body)
                .unwrap()
        };
        let layer = ReplayBodyConfig::new().limit(8).build().unwrap();
        let (mut svc, mut handle) = mock::spawn_layer::<_, Response<()>, _>(layer);
        handle.allow(1);
        assert_ready_ok!(svc.poll_ready());
        let mut call = tokio_test::task::spawn(svc.call(req));
        // The inner service got the request in `call`, before any poll.
        let (req, send) = handle.next_request().await.unwrap();
        assert!(!polled.load(Ordering::SeqCst), "the body was not read");
        assert!(req.extensions().get::<NotReplayable>().is_some());
        assert!(!req.body().is_replayable());
        assert!(!HttpRequests.is_replayable(&req));
        assert_eq!(req.body().size_hint().exact(), exact.then_some(20));
        let got = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got, sent);
        assert_pending!(call.poll());
        send.send_response(Response::new(()));
        assert_ready_ok!(call.poll());
    }
}

#[tokio::test]
async fn a_request_the_http_rule_never_replays_is_not_buffered_unless_told() {
    // A POST without an Idempotency-Key: never retried by `HttpRequests`,
    // so by default its body goes through unread; with `all_methods` it is
    // buffered like any other (for a custom policy that replays it).
    for all_methods in [false, true] {
        let body = Source::new(&[b"order", b" #1"]);
        let polled = Arc::clone(&body.polled);
        let req = Request::post("/orders").body(body).unwrap();
        let layer = ReplayBodyConfig::new()
            .all_methods(all_methods)
            .build()
            .unwrap();
        let (mut svc, mut handle) = mock::spawn_layer::<_, Response<()>, _>(layer);
        handle.allow(1);
        assert_ready_ok!(svc.poll_ready());
        // The call runs on its own task: buffering, if any, happens before
        // the inner service sees the request.
        let call = tokio::spawn(svc.call(req));
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(
            polled.load(Ordering::SeqCst),
            all_methods,
            "read before the call"
        );
        assert_eq!(req.body().is_replayable(), all_methods);
        let got = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got, &b"order #1"[..]);
        send.send_response(Response::new(()));
        call.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn copies_of_an_over_limit_body_never_carry_part_of_it() {
    for clone_first in [false, true] {
        let body = Source::new(&[b"0123456789", b"0123456789"]);
        let sent = body.bytes();
        let layer = ReplayBodyConfig::new().limit(4).build().unwrap();
        let (mut svc, mut handle) = mock::spawn_layer::<_, Response<()>, _>(layer);
        handle.allow(1);
        assert_ready_ok!(svc.poll_ready());
        // Buffering passes the limit after 10 bytes: those and the rest.
        let _call = tokio::spawn(svc.call(put(body)));
        let (req, _send) = handle.next_request().await.unwrap();
        let original = req.into_body();
        let copy = original.clone();
        // Whichever copy is read first gets the whole body; the other
        // fails at once instead of yielding a partial body.
        let (first, second) = if clone_first {
            (copy, original)
        } else {
            (original, copy)
        };
        assert_eq!(first.collect().await.unwrap().to_bytes(), sent);
        let err = second.collect().await.unwrap_err();
        assert!(err.is::<BodyTaken>(), "{err}");
    }
}

// === reading the body fails ===

#[tokio::test(start_paused = true)]
async fn a_body_error_while_buffering_fails_the_call_and_sends_nothing() {
    let mut body = Source::new(&[b"partial ", b"upload"]);
    body.fail = Some("client went away");
    let (svc, log) = upstream(&[]);
    let err = stack(1024, 3, svc).oneshot(put(body)).await.unwrap_err();
    let err = err
        .downcast_ref::<BodyReadError>()
        .expect("a BodyReadError");
    assert_eq!(err.buffered(), 14);
    assert_eq!(
        std::error::Error::source(err).unwrap().to_string(),
        "client went away"
    );
    assert_eq!(log.calls(), 0, "no request with a partial body went out");
}

// === readiness and ordering ===

#[tokio::test]
async fn the_first_try_starts_once_the_body_is_buffered_on_the_ready_service() {
    let body = Source::new(&[b"a", b"b", b"c"]);
    let layer = ReplayBodyLayer::new();
    let (mut svc, mut handle) = mock::spawn_layer::<_, Response<()>, _>(layer);
    handle.allow(0);
    assert_pending!(svc.poll_ready(), "readiness is the inner service's");
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let mut call = tokio_test::task::spawn(svc.call(put(body)));
    // Three chunks, each behind a Pending, then the end.
    for _ in 0..4 {
        assert_pending!(call.poll());
        assert!(
            handle.poll_request().is_pending(),
            "not called while buffering"
        );
    }
    assert_pending!(call.poll());
    let (req, send) = handle.next_request().await.unwrap();
    assert!(req.body().is_replayable());
    assert_eq!(req.body().size_hint().exact(), Some(3));
    let copy = req.body().clone();
    assert_eq!(copy.collect().await.unwrap().to_bytes(), "abc");
    send.send_response(Response::new(()));
    assert_ready_ok!(call.poll());
}

// === configuration and policy ===

#[test]
fn config_refuses_a_zero_limit_and_loads_from_toml() {
    assert_eq!(ReplayBodyLayer::new().limit(), 64 * 1024);
    assert_eq!(ReplayBodyConfig::new().build().unwrap().limit(), 64 * 1024);
    let err = ReplayBodyConfig::new().limit(0).build().unwrap_err();
    assert_eq!(err.field(), "limit");
    let cfg: ReplayBodyConfig = toml::from_str("limit = 1024").unwrap();
    assert_eq!(cfg.build().unwrap().limit(), 1024);
    assert!(toml::from_str::<ReplayBodyConfig>("limits = 1").is_err());
}

#[test]
fn http_requests_never_replays_a_marked_request() {
    let mut req = Request::get("/").body(()).unwrap();
    assert!(HttpRequests.is_replayable(&req));
    req.extensions_mut().insert(NotReplayable);
    assert!(!HttpRequests.is_replayable(&req));
}

// === property: every try carries the source bytes ===

proptest! {
    #[test]
    fn every_try_carries_the_source_and_retries_iff_within_the_limit(
        sizes in prop::collection::vec(0usize..48, 0..12),
        limit in 1usize..400,
        trailers in any::<bool>(),
    ) {
        let chunks: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let mut body = Source::new(&refs);
        if trailers {
            body.trailers = Some(checksum());
        }
        let sent = Received { data: body.bytes(), trailers: trailers.then(checksum) };
        let total = sent.data.len();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let (svc, log) = upstream(&[503, 503]);
        let resp = rt.block_on(stack(limit, 2, svc).oneshot(put(body))).unwrap();
        prop_assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let tries = if total <= limit { 2 } else { 1 };
        prop_assert_eq!(log.calls(), tries);
        prop_assert_eq!(log.received(), vec![sent; tries]);
    }
}

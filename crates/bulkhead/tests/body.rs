//! Holding the permit until the HTTP response body ends.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame};
use rampart_bulkhead::{BulkheadConfig, BulkheadLayer, Handle, PermitBody, ReleaseOnBodyEnd};
use tokio::sync::mpsc;
use tokio_test::{assert_ready_ok, task};
use tower_test::{assert_request_eq, mock};

/// A body streaming whatever its sender sends; it ends when the sender is
/// dropped, or fails when told to.
struct ChanBody {
    rx: mpsc::UnboundedReceiver<Result<&'static str, &'static str>>,
}

impl Body for ChanBody {
    type Data = &'static [u8];
    type Error = &'static str;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|r| r.map(|s| Frame::data(s.as_bytes()))))
    }
}

/// A body with nothing in it.
struct Empty;

impl Body for Empty {
    type Data = &'static [u8];
    type Error = &'static str;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        true
    }
}

fn layer() -> (BulkheadLayer<ReleaseOnBodyEnd>, Handle) {
    let layer = BulkheadConfig::default().max_concurrent(1).build().unwrap();
    let handle = layer.handle();
    (layer.hold_until_body_end(), handle)
}

async fn frame<B: Body + Unpin>(body: &mut B) -> Option<Result<Frame<B::Data>, B::Error>> {
    poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
}

/// Calls the service once and returns the response's body, with its sender.
async fn call(
    layer: BulkheadLayer<ReleaseOnBodyEnd>,
) -> (
    PermitBody<ChanBody>,
    mpsc::UnboundedSender<Result<&'static str, &'static str>>,
) {
    let (mut svc, mut inner) = mock::spawn_layer::<(), http::Response<ChanBody>, _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call(()));
    let (tx, rx) = mpsc::unbounded_channel();
    assert_request_eq!(inner, ()).send_response(http::Response::new(ChanBody { rx }));
    let response = assert_ready_ok!(fut.poll());
    (response.into_body(), tx)
}

#[tokio::test]
async fn the_permit_is_held_until_the_body_ends() {
    let (layer, h) = layer();
    let (mut body, tx) = call(layer).await;
    // the response has arrived, the body is still streaming
    assert_eq!(h.in_flight(), 1);
    assert!(body.holds_permit());

    tx.send(Ok("hello")).unwrap();
    let chunk = frame(&mut body).await.unwrap().unwrap();
    assert_eq!(chunk.into_data().unwrap(), b"hello");
    assert_eq!(h.in_flight(), 1);

    drop(tx);
    assert!(frame(&mut body).await.is_none());
    assert_eq!(h.in_flight(), 0);
    assert!(!body.holds_permit());
}

#[tokio::test]
async fn dropping_the_body_releases_the_permit() {
    let (layer, h) = layer();
    let (body, _tx) = call(layer).await;
    assert_eq!(h.in_flight(), 1);
    drop(body);
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test]
async fn a_body_error_releases_the_permit() {
    let (layer, h) = layer();
    let (mut body, tx) = call(layer).await;
    tx.send(Err("reset")).unwrap();
    assert_eq!(frame(&mut body).await.unwrap().unwrap_err(), "reset");
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test]
async fn an_empty_body_releases_the_permit_at_once() {
    let (layer, h) = layer();
    let (mut svc, mut inner) = mock::spawn_layer::<(), http::Response<Empty>, _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call(()));
    assert_request_eq!(inner, ()).send_response(http::Response::new(Empty));
    let response = assert_ready_ok!(fut.poll());
    assert!(response.body().is_end_stream());
    assert!(!response.body().holds_permit());
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test]
async fn without_the_option_the_permit_is_released_with_the_response() {
    let layer = BulkheadConfig::default().max_concurrent(1).build().unwrap();
    let h = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<(), http::Response<ChanBody>, _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call(()));
    let (_tx, rx) = mpsc::unbounded_channel();
    assert_request_eq!(inner, ()).send_response(http::Response::new(ChanBody { rx }));
    let _response = assert_ready_ok!(fut.poll());
    assert_eq!(h.in_flight(), 0);
}

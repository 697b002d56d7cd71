//! Compile-time checks: layers, services, handles and futures can be shared
//! across threads and cloned, as axum's `Router::layer` and tonic need.

use std::convert::Infallible;
use std::future::Ready;
use std::task::{Context, Poll};

use rampart_backpressure::rate::future::ResponseFuture;
use rampart_backpressure::{
    AdaptiveHandle, AdaptiveLimit, AdaptiveLimitConfig, AdaptiveLimitLayer, Admission, Handle,
    KeyedQueue, KeyedQueueHandle, KeyedQueueLayer, KeyedRateLimit, KeyedRateLimitHandle,
    KeyedRateLimitLayer, Overloaded, Queue, QueueClosed, QueueConfig, QueueHandle, QueueLayer,
    RateLimit, RateLimitConfig, RateLimitLayer, Reason,
};
use rampart_core::keyed::KeyedConfig;
use tower::Layer;
use tower::util::BoxCloneSyncService;

fn clone_send_sync<T: Clone + Send + Sync + 'static>() {}
fn send<T: Send + 'static>() {}

type Req = http::Request<String>;
type KeyFn = fn(&Req) -> String;

#[derive(Clone)]
struct Svc;

impl tower::Service<Req> for Svc {
    type Response = http::Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Req) -> Self::Future {
        std::future::ready(Ok(http::Response::new(String::new())))
    }
}

#[test]
fn layers_services_and_handles_are_clone_send_sync() {
    clone_send_sync::<RateLimitLayer>();
    clone_send_sync::<RateLimit<Svc>>();
    clone_send_sync::<KeyedRateLimitLayer<String, KeyFn>>();
    clone_send_sync::<KeyedRateLimit<Svc, String, KeyFn>>();
    clone_send_sync::<Handle>();
    clone_send_sync::<KeyedRateLimitHandle<String>>();
    clone_send_sync::<RateLimitConfig>();
    clone_send_sync::<Admission>();
    clone_send_sync::<Overloaded>();
    clone_send_sync::<Reason>();
    send::<ResponseFuture<Svc, Req>>();
    clone_send_sync::<AdaptiveLimitLayer>();
    clone_send_sync::<AdaptiveLimit<Svc>>();
    clone_send_sync::<AdaptiveHandle>();
    clone_send_sync::<AdaptiveLimitConfig>();
    send::<rampart_backpressure::adaptive::future::ResponseFuture<Svc, Req>>();
    clone_send_sync::<QueueLayer<Req>>();
    clone_send_sync::<KeyedQueueLayer<String, KeyFn, Req>>();
    clone_send_sync::<KeyedQueue<Svc, String, KeyFn, Req>>();
    clone_send_sync::<KeyedQueueHandle<String>>();
    clone_send_sync::<Queue<Req, Ready<Result<http::Response<String>, Infallible>>>>();
    clone_send_sync::<QueueHandle>();
    clone_send_sync::<QueueConfig>();
    clone_send_sync::<QueueClosed>();
    send::<
        rampart_backpressure::queue::future::ResponseFuture<
            Ready<Result<http::Response<String>, Infallible>>,
            Req,
        >,
    >();
}

#[test]
fn boxes_into_a_clone_sync_service() {
    let layer = RateLimitConfig::new().build().unwrap();
    let _plain = BoxCloneSyncService::new(layer.layer(Svc));
    let keyed = RateLimitConfig::new()
        .build_keyed(
            |req: &Req| req.uri().path().to_owned(),
            KeyedConfig::default(),
        )
        .unwrap();
    let _keyed = BoxCloneSyncService::new(keyed.layer(Svc));
    let adaptive = AdaptiveLimitConfig::new().build().unwrap();
    let _adaptive = BoxCloneSyncService::new(adaptive.layer(Svc));
}

#[tokio::test]
async fn queue_boxes_into_a_clone_sync_service() {
    let layer: QueueLayer<Req> = QueueConfig::new().build().unwrap();
    let _queue = BoxCloneSyncService::new(layer.layer(Svc));
}

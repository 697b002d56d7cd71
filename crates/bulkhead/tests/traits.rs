//! Compile-time checks: layers, services, handles and futures can be shared
//! across threads and cloned, as axum's `Router::layer` and tonic need.

use std::convert::Infallible;
use std::future::Ready;
use std::task::{Context, Poll};

use rampart_bulkhead::future::ResponseFuture;
use rampart_bulkhead::{
    Bulkhead, BulkheadConfig, BulkheadFull, BulkheadLayer, Handle, KeyedBulkhead,
    KeyedBulkheadLayer, KeyedHandle, Permit, PermitBody, ReleaseOnBodyEnd, Snapshot,
};
use rampart_core::keyed::KeyedConfig;
use tower::Layer;
use tower::util::BoxCloneSyncService;

fn clone_send_sync<T: Clone + Send + Sync + 'static>() {}
fn send_sync<T: Send + Sync + 'static>() {}
fn send<T: Send + 'static>() {}

type Req = http::Request<String>;
type KeyFn = fn(&Req) -> String;

/// An HTTP service standing in for an axum router or a tonic server.
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
    clone_send_sync::<BulkheadLayer>();
    clone_send_sync::<BulkheadLayer<ReleaseOnBodyEnd>>();
    clone_send_sync::<Bulkhead<Svc>>();
    clone_send_sync::<Bulkhead<Svc, ReleaseOnBodyEnd>>();
    clone_send_sync::<KeyedBulkheadLayer<String, KeyFn>>();
    clone_send_sync::<KeyedBulkheadLayer<String, KeyFn, ReleaseOnBodyEnd>>();
    clone_send_sync::<KeyedBulkhead<Svc, String, KeyFn>>();
    clone_send_sync::<KeyedBulkhead<Svc, String, KeyFn, ReleaseOnBodyEnd>>();
    clone_send_sync::<Handle>();
    clone_send_sync::<KeyedHandle<String>>();
    clone_send_sync::<BulkheadConfig>();
    clone_send_sync::<BulkheadFull>();
    clone_send_sync::<Snapshot>();
    send_sync::<Permit>();
    send_sync::<PermitBody<String>>();
    send::<ResponseFuture<Svc, Req>>();
    send::<ResponseFuture<Svc, Req, ReleaseOnBodyEnd>>();
}

#[test]
fn boxes_into_a_clone_sync_service() {
    // `BoxCloneSyncService` demands `Clone + Send + Sync` of the service and
    // `Send` of its future, as axum's router does.
    let layer = BulkheadConfig::default().build().unwrap();
    let _plain = BoxCloneSyncService::new(layer.layer(Svc));
    let keyed = BulkheadConfig::default()
        .build_keyed(
            |req: &Req| req.uri().path().to_owned(),
            KeyedConfig::default(),
        )
        .unwrap();
    let _keyed = BoxCloneSyncService::new(keyed.hold_until_body_end().layer(Svc));
}

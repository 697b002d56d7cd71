//! JSON over HTTP, as the admin router and the participant server answer
//! it: one error shape, a capped body reader, one way to respond.

use std::fmt;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use rampart_core::BoxError;
use serde::Serialize;
use serde_json::json;

/// An answer other than 200: `{"error": {"kind", "message"}}`.
#[derive(Debug)]
pub(crate) struct Reject {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl Reject {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A 400 naming the query parameter `key`.
    pub(crate) fn query(key: &str, problem: impl fmt::Display) -> Self {
        Self::bad_request(format!("query parameter {key:?}: {problem}"))
    }

    pub(crate) fn response(self) -> Response<Full<Bytes>> {
        let body = json!({ "error": { "kind": self.kind, "message": self.message } });
        respond(self.status, Bytes::from(body.to_string()))
    }
}

pub(crate) async fn read_body<B>(body: B, max: usize) -> Result<Bytes, Reject>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let too_large = || {
        Reject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is over {max} bytes"),
        )
    };
    if body.size_hint().lower() > max as u64 {
        return Err(too_large());
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(e) => Err(Reject::bad_request(format!("reading the body: {e}"))),
    }
}

pub(crate) fn to_json(value: &impl Serialize) -> Result<Bytes, Reject> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|e| {
        Reject::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("encoding the answer: {e}"),
        )
    })
}

pub(crate) fn respond(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A 405 saying `message`, with `allow` naming the method to use.
pub(crate) fn method_not_allowed(message: String, allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = Reject::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        message,
    )
    .response();
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// `impl tower::Service<http::Request<B>>` for a cloneable `$ty` whose
/// `async fn handle(self, Request<B>) -> Response<Full<Bytes>>` answers
/// every request (errors included), for any request body.
macro_rules! json_service {
    ($ty:ty) => {
        impl<B> tower::Service<http::Request<B>> for $ty
        where
            B: hyper::body::Body + Send + 'static,
            B::Data: Send,
            B::Error: Into<rampart_core::BoxError>,
        {
            type Response = http::Response<http_body_util::Full<bytes::Bytes>>;
            type Error = std::convert::Infallible;
            type Future =
                rampart_core::BoxFuture<'static, Result<Self::Response, std::convert::Infallible>>;

            fn poll_ready(
                &mut self,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), std::convert::Infallible>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn call(&mut self, request: http::Request<B>) -> Self::Future {
                let this = self.clone();
                Box::pin(async move { Ok(this.handle(request).await) })
            }
        }
    };
}

pub(crate) use json_service;

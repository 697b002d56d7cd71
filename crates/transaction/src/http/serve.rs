//! The participant's end of [`HttpParticipants`](super::HttpParticipants):
//! [`ParticipantServer`] serves any [`Participant`] over HTTP.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use rampart_core::BoxError;
use serde_json::Value;
use tower::ServiceExt;

use crate::json_http::{Reject, json_service, method_not_allowed, read_body, respond, to_json};
use crate::model::{BranchId, Op, TxId};
use crate::participant::{
    Attempt, BRANCH_ID_HEADER, BranchCall, OP_HEADER, Participant, TX_ID_HEADER,
};

/// The largest request body read by default: 1 MiB.
const DEFAULT_MAX_BODY: usize = 1 << 20;

/// Serves a [`Participant`] over HTTP, answering the way
/// [`HttpParticipants`](super::HttpParticipants) judges answers, so that
/// every outcome reaches the coordinator with its kind intact.
///
/// A `tower::Service<http::Request<B>>` for any request body. Mount it with
/// hyper (`hyper::service::service_fn(move |r| server.clone().oneshot(r))`)
/// or axum (`Router::route_service("/orders/reserve", server)`). Each
/// `POST` carries the idempotency key in the [`TX_ID_HEADER`],
/// [`BRANCH_ID_HEADER`] and [`OP_HEADER`] headers and the payload as JSON.
///
/// | the participant answers | status | judged by the coordinator as |
/// |---|---|---|
/// | `Ok(value)` | 200, `value` as JSON | success, `value` the output |
/// | a terminal `BranchError` (a refusal) | 409 | terminal |
/// | a retryable `BranchError` | 503 | retryable |
/// | an in-doubt `BranchError`, or any other error | 500 | in doubt |
/// | (never called) a missing or invalid header, a body that is not JSON | 400 | terminal: nothing applied |
/// | (never called) not a `POST` | 405, `allow: POST` | terminal |
/// | (never called) a body over [`max_body`](Self::max_body) | 413 | terminal |
///
/// An error answer's body is `{"error": {"kind", "message"}}`. Under
/// overload it does not shed anything itself: put a concurrency limit or a
/// load shedder in front, whose 503 the coordinator retries.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use rampart_transaction::http::ParticipantServer;
/// use rampart_transaction::participant::{BranchCall, BranchError, participant};
/// use serde_json::json;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let stock = participant(tower::service_fn(|call: BranchCall| async move {
///     if call.payload["qty"].as_u64() > Some(5) {
///         return Err(BranchError::terminal("out of stock"));
///     }
///     Ok(json!({ "hold": format!("{}/{}", call.tx, call.branch) }))
/// }));
/// let server = ParticipantServer::new(stock);
/// let request = |qty: u64| {
///     http::Request::post("/stock/reserve")
///         .header("x-rampart-tx-id", "order-42")
///         .header("x-rampart-branch-id", "reserve")
///         .header("x-rampart-op", "action")
///         .body(Full::new(Bytes::from(json!({ "qty": qty }).to_string())))
/// };
/// assert_eq!(server.clone().oneshot(request(2)?).await?.status(), 200);
/// assert_eq!(server.oneshot(request(9)?).await?.status(), 409); // a refusal: terminal
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ParticipantServer {
    participant: Participant,
    max_body: usize,
}

impl std::fmt::Debug for ParticipantServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParticipantServer")
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl ParticipantServer {
    /// Serves `participant`; request bodies up to 1 MiB.
    pub fn new(participant: Participant) -> Self {
        Self {
            participant,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// The largest request body read; a larger one is answered 413 and
    /// the participant is not called. Defaults to 1 MiB.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    async fn handle<B>(self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        if parts.method != Method::POST {
            return method_not_allowed(
                format!("a branch call is a POST, not {}", parts.method),
                "POST",
            );
        }
        let call = match branch_call(&parts.headers, body, self.max_body).await {
            Ok(call) => call,
            Err(reject) => return reject.response(),
        };
        let answer = self.participant.oneshot(call).await;
        let (status, kind) = match Attempt::judge(answer) {
            Attempt::Success(output) => {
                return match to_json(&output) {
                    Ok(body) => respond(StatusCode::OK, body),
                    Err(reject) => reject.response(),
                };
            }
            Attempt::Terminal(e) => ((StatusCode::CONFLICT, "refused"), e),
            Attempt::Retryable(e) => ((StatusCode::SERVICE_UNAVAILABLE, "retryable"), e),
            Attempt::InDoubt(e) => ((StatusCode::INTERNAL_SERVER_ERROR, "in_doubt"), e),
        };
        Reject::new(status.0, status.1, kind).response()
    }
}

/// The branch call in a request's headers and body.
async fn branch_call<B>(headers: &HeaderMap, body: B, max: usize) -> Result<BranchCall, Reject>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let header = |name: &str| {
        headers
            .get(name)
            .ok_or_else(|| Reject::bad_request(format!("header {name} is missing")))?
            .to_str()
            .map_err(|_| Reject::bad_request(format!("header {name} is not text")))
    };
    let tx = TxId::new(header(TX_ID_HEADER)?)
        .map_err(|e| Reject::bad_request(format!("header {TX_ID_HEADER}: {e}")))?;
    let branch = BranchId::new(header(BRANCH_ID_HEADER)?)
        .map_err(|e| Reject::bad_request(format!("header {BRANCH_ID_HEADER}: {e}")))?;
    let op = header(OP_HEADER)?;
    let op = Op::parse(op)
        .ok_or_else(|| Reject::bad_request(format!("header {OP_HEADER}: unknown op {op:?}")))?;
    let body = read_body(body, max).await?;
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Reject::bad_request(format!("the body is not JSON: {e}")))?
    };
    Ok(BranchCall {
        tx,
        branch,
        op,
        payload,
    })
}

json_service!(ParticipantServer);

//! HTTP participants: a URL as a [`Participant`] on a pooled hyper client.
//!
//! Each call is a `POST` of the payload as JSON to the branch's URL, with
//! the idempotency key in the [`TX_ID_HEADER`], [`BRANCH_ID_HEADER`] and
//! [`OP_HEADER`] headers. The answer is judged into a typed outcome:
//!
//! | answer | outcome | why |
//! |---|---|---|
//! | 2xx with a JSON body (or none) | success, the body as output (`null` when empty) | |
//! | 2xx whose body is not JSON | in doubt | the participant answered garbage: it may have applied the call |
//! | 400, 403, 404, 405, 409, 410, 412, 413, 415, 422 | terminal | a business refusal or a call the participant cannot take; nothing applied |
//! | 408, 425, 429, 503 (and 502, 504 from a proxy before the participant) | retryable | not applied; try later |
//! | any other status (500 …) | in doubt | it may have applied part of the call |
//! | connection refused (nothing sent) | retryable | |
//! | timeout, connection lost after sending, a malformed answer | in doubt | |
//!
//! 502 and 504 are read as "not applied" because a gateway answers them
//! when it could not reach the participant; a participant behind a proxy
//! that may time out *after* forwarding should answer with its own status
//! and make its calls idempotent (every call carries the key for that).
//!
//! [`ParticipantServer`] is the other end: it serves any participant over
//! HTTP, answering with the statuses above so that every outcome keeps its
//! kind.
//!
//! The same client asks a coordinator's [admin router](crate::admin) for
//! a decision, for a participant left in doubt (a 2PC branch prepared,
//! its coordinator silent): [`HttpParticipants::decision`].

mod serve;

pub use serve::ParticipantServer;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rampart_core::BoxError;
use serde_json::Value;

use crate::model::{Decision, TxId};
use crate::participant::{
    BRANCH_ID_HEADER, BranchCall, BranchError, OP_HEADER, Participant, TX_ID_HEADER, participant,
};

/// The largest answer body read (larger answers are in doubt).
const MAX_BODY: usize = 1 << 20;

/// A pooled HTTP/1 client that makes [`Participant`]s from URLs. Clones
/// share the connection pool.
#[derive(Debug, Clone)]
pub struct HttpParticipants {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Default for HttpParticipants {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl HttpParticipants {
    /// A client whose calls time out (in doubt) after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Self { client, timeout }
    }

    /// A participant that `POST`s each call to `url` (`http://…`; an
    /// unparsable URL is refused here, not at call time).
    pub fn participant(&self, url: &str) -> Result<Participant, BoxError> {
        let uri: Uri = url.parse()?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(format!(
                "participant url {url:?}: only http://host[:port]/path is supported"
            )
            .into());
        }
        let client = self.client.clone();
        let timeout = self.timeout;
        Ok(participant(tower::service_fn(move |call: BranchCall| {
            let client = client.clone();
            let uri = uri.clone();
            async move {
                match tokio::time::timeout(timeout, send(&client, uri, call)).await {
                    Ok(result) => result,
                    Err(_) => {
                        Err(BranchError::in_doubt(format!("no answer within {timeout:?}")).into())
                    }
                }
            }
        })))
    }

    /// Asks the [admin router](crate::admin) at `base_url` (its root with
    /// the prefix, `http://coordinator:9091/admin/tx`) what was decided for
    /// `tx`: `GET {base_url}/transactions/{tx}/decision`, within this
    /// client's timeout. `Ok(None)`: undecided yet, ask again later;
    /// `Ok(Some(Abort))` also for a transaction the log does not know
    /// (presumed abort). Every error means "no answer": keep the branch
    /// prepared and ask again.
    pub async fn decision(
        &self,
        base_url: &str,
        tx: &TxId,
    ) -> Result<Option<Decision>, DecisionError> {
        let url = format!(
            "{}/transactions/{tx}/decision",
            base_url.trim_end_matches('/')
        );
        let uri: Uri = url
            .parse()
            .map_err(|e| DecisionError::Url(format!("{url:?}: {e}")))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(DecisionError::Url(format!(
                "{url:?}: only http://host[:port]/path is supported"
            )));
        }
        let request = Request::get(uri)
            .header(header::ACCEPT, "application/json")
            .body(Full::default())
            .map_err(|e| DecisionError::Url(format!("{url:?}: {e}")))?;
        let timeout = self.timeout;
        let (status, body) = tokio::time::timeout(timeout, fetch(&self.client, request))
            .await
            .map_err(|_| {
                DecisionError::Unreachable(format!("no answer within {timeout:?}").into())
            })??;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if status != StatusCode::OK {
            let message = json
                .as_ref()
                .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned()
                });
            return Err(DecisionError::Status { status, message });
        }
        let malformed = |what: &str| {
            DecisionError::Malformed(format!(
                "{what}: {}",
                String::from_utf8_lossy(&body[..body.len().min(512)])
            ))
        };
        let json = json.ok_or_else(|| malformed("not JSON"))?;
        if json.get("tx").and_then(Value::as_str) != Some(tx.as_str()) {
            return Err(malformed("not the answer for this transaction"));
        }
        let decision = json
            .get("decision")
            .ok_or_else(|| malformed("no decision"))?;
        serde_json::from_value(decision.clone()).map_err(|_| malformed("an unknown decision"))
    }
}

/// Why [`HttpParticipants::decision`] got no answer. Each means "ask
/// again later", never a decision.
#[derive(Debug)]
#[non_exhaustive]
pub enum DecisionError {
    /// The base URL does not make an `http://host[:port]/path` URL.
    Url(String),
    /// No answer: the connection was refused or lost, or no answer came
    /// within the client's timeout.
    Unreachable(BoxError),
    /// The router answered another status: 503 when the coordinator's log
    /// cannot be read, 404 when `base_url` is not the router's root, 400
    /// for an id it refuses.
    Status {
        /// The status.
        status: StatusCode,
        /// The router's error message (or the start of the body).
        message: String,
    },
    /// A 200 whose body is not the decision route's answer for this
    /// transaction.
    Malformed(String),
}

impl fmt::Display for DecisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(e) => write!(f, "invalid decision url {e}"),
            Self::Unreachable(e) => write!(f, "coordinator unreachable: {e}"),
            Self::Status { status, message } => {
                write!(f, "coordinator answered {status}: {message}")
            }
            Self::Malformed(e) => write!(f, "malformed decision answer, {e}"),
        }
    }
}

impl std::error::Error for DecisionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unreachable(e) => Some(&**e),
            _ => None,
        }
    }
}

/// Sends `request` and reads the answer (up to [`MAX_BODY`]).
async fn fetch(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), DecisionError> {
    let response = client
        .request(request)
        .await
        .map_err(|e| DecisionError::Unreachable(e.into()))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(DecisionError::Unreachable)?
        .to_bytes();
    Ok((status, body))
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    call: BranchCall,
) -> Result<Value, BoxError> {
    let body = serde_json::to_vec(&call.payload)?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(TX_ID_HEADER, call.tx.as_str())
        .header(BRANCH_ID_HEADER, call.branch.as_str())
        .header(OP_HEADER, call.op.as_str())
        .body(Full::new(Bytes::from(body)))?;
    let response = match client.request(request).await {
        Ok(response) => response,
        Err(e) if e.is_connect() => {
            return Err(BranchError::retryable(format!("connect: {e}")).into());
        }
        Err(e) => return Err(BranchError::in_doubt(format!("request: {e}")).into()),
    };
    let status = response.status();
    let body = match Limited::new(response.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return Err(BranchError::in_doubt(format!("reading the answer: {e}")).into()),
    };
    judge(status, &body)
}

/// The outcome of an answer with `status` and `body` (see the module docs).
fn judge(status: StatusCode, body: &[u8]) -> Result<Value, BoxError> {
    let text = || String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    if status.is_success() {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        return serde_json::from_slice(body).map_err(|e| {
            BranchError::in_doubt(format!("{status} with a body that is not JSON ({e})")).into()
        });
    }
    let error = match status.as_u16() {
        400 | 403 | 404 | 405 | 409 | 410 | 412 | 413 | 415 | 422 => {
            BranchError::terminal(format!("{status}: {}", text()))
        }
        408 | 425 | 429 | 502 | 503 | 504 => {
            BranchError::retryable(format!("{status}: {}", text()))
        }
        _ => BranchError::in_doubt(format!("{status}: {}", text())),
    };
    Err(error.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::participant::Attempt;

    fn outcome(status: u16, body: &str) -> Attempt {
        Attempt::judge(judge(
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        ))
    }

    #[test]
    fn statuses_are_judged_as_documented() {
        assert_eq!(
            outcome(200, r#"{"id":7}"#),
            Attempt::Success(serde_json::json!({"id": 7}))
        );
        assert_eq!(outcome(204, ""), Attempt::Success(Value::Null));
        assert!(matches!(outcome(200, "<html>"), Attempt::InDoubt(_)));
        for s in [400, 403, 404, 405, 409, 410, 412, 413, 415, 422] {
            assert!(matches!(outcome(s, "no"), Attempt::Terminal(_)), "{s}");
        }
        for s in [408, 425, 429, 502, 503, 504] {
            assert!(matches!(outcome(s, ""), Attempt::Retryable(_)), "{s}");
        }
        for s in [500, 501, 507] {
            assert!(matches!(outcome(s, ""), Attempt::InDoubt(_)), "{s}");
        }
    }
}

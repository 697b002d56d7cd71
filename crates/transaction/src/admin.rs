//! The admin HTTP router: the [`Coordinator`]'s admin calls as JSON over
//! HTTP, and the decision route that participants in doubt poll.
//!
//! [`AdminRouter`] is a `tower::Service<http::Request<B>>` for any request
//! body, answering `application/json`. Mount it in hyper directly (wrap it
//! with `hyper::service::service_fn` or hyper-util's
//! `TowerToHyperService`; give it the path [`prefix`](AdminRouter::prefix)
//! it lives under) or in axum with `Router::nest_service("/admin/tx",
//! router)` (axum strips the prefix, so leave it unset there).
//!
//! | Route | Calls | Answer |
//! |---|---|---|
//! | `GET /transactions?state=…&protocol=…&older_than_ms=…&limit=…` | [`list`](Coordinator::list) | `{"transactions": [summary, …]}`, oldest first |
//! | `GET /transactions/{id}` | [`inspect`](Coordinator::inspect) | the record with every branch |
//! | `GET /transactions/{id}/decision` | [`decision`](Coordinator::decision) | `{"tx": id, "decision": "commit" \| "abort" \| null}` |
//! | `POST /transactions/{id}/resume` | [`resume`](Coordinator::resume) | the record after |
//! | `POST /transactions/{id}/force-compensate` | [`force_compensate`](Coordinator::force_compensate) | the record after |
//! | `POST /transactions/{id}/resolve`, body `{"note": "…"}` | [`mark_resolved`](Coordinator::mark_resolved) | the record after |
//!
//! List parameters: `state` (repeated or comma-separated: `running`,
//! `committing`, `aborting`, `committed`, `aborted`, `needs_intervention`,
//! `resolved`), `protocol` (`saga`, `tcc`, `two_phase`, `three_phase`),
//! `older_than_ms` (created at least that long ago), `limit` (1 to 1000;
//! 100 when absent). `resume` and `force-compensate` take an empty body or
//! `{}`. `resume` and `force-compensate` answer after this coordinator's
//! next recovery round, which drives the transaction (its branch calls
//! included).
//!
//! The decision route answers `null` while a transaction runs undecided
//! (ask again later) and `"abort"` for an unknown id (presumed abort); a
//! log that cannot be read is a 503, never an `"abort"`.
//!
//! Every other answer is `{"error": {"kind": …, "message": …}}`:
//!
//! | Status | `kind` | When |
//! |---|---|---|
//! | 400 | `bad_request` | an invalid id, an unknown or malformed query parameter (named), a body that is not the expected JSON (unknown fields refused) |
//! | 404 | `not_found` | an unknown path, or no such transaction (inspect and the admin actions) |
//! | 405 | `method_not_allowed` | a known path with the wrong method (`allow` names the right one) |
//! | 409 | `invalid_state` | the action does not apply in the transaction's state |
//! | 409 | `conflict` | a coordinator wrote the transaction meanwhile: retry |
//! | 413 | `payload_too_large` | a body over [`max_body`](AdminRouter::max_body) |
//! | 500 | `store_corrupt` | the record does not decode |
//! | 500 | `internal` | anything else |
//! | 503 | `store_unavailable` | the log cannot be reached: retry later |
//!
//! The router does no authentication: serve it on an internal listener or
//! behind your own auth layer.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Empty};
//! use rampart_transaction::admin::AdminRouter;
//! use rampart_transaction::coordinator::{Coordinator, CoordinatorConfig};
//! use rampart_transaction::store::MemoryTxStore;
//! use serde_json::{Value, json};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let coordinator = Coordinator::new(Arc::new(MemoryTxStore::new()), CoordinatorConfig::new())?;
//! let router = AdminRouter::new(coordinator).prefix("/admin/tx");
//!
//! // a participant in doubt asks about a transaction the log never saw
//! let request = http::Request::get("/admin/tx/transactions/order-42/decision")
//!     .body(Empty::<Bytes>::new())?;
//! let response = router.clone().oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! let body: Value = serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
//! assert_eq!(body, json!({ "tx": "order-42", "decision": "abort" }));
//!
//! let request = http::Request::get("/admin/tx/transactions?state=needs_intervention")
//!     .body(Empty::<Bytes>::new())?;
//! let response = router.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(()) }
//! ```
//!
//! Served by hyper on its own listener:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use rampart_transaction::admin::AdminRouter;
//! # use rampart_transaction::coordinator::{Coordinator, CoordinatorConfig};
//! # use rampart_transaction::store::MemoryTxStore;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let coordinator = Coordinator::new(Arc::new(MemoryTxStore::new()), CoordinatorConfig::new())?;
//! let router = AdminRouter::new(coordinator).prefix("/admin/tx");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9091").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let router = router.clone();
//!     tokio::spawn(async move {
//!         let service = hyper::service::service_fn(move |request| router.clone().oneshot(request));
//!         let io = hyper_util::rt::TokioIo::new(stream);
//!         let _ = hyper::server::conn::http1::Builder::new()
//!             .serve_connection(io, service)
//!             .await;
//!     });
//! }
//! # }
//! ```

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use rampart_core::BoxError;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::coordinator::{Coordinator, TxError};
use crate::json_http::{Reject, json_service, method_not_allowed, read_body, respond, to_json};
use crate::model::{Protocol, TxId, TxState, now_ms};
use crate::store::{StoreError, TxFilter};

/// The largest request body read by default: 64 KiB.
const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// Transactions listed when the request names no `limit`.
const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` a list takes.
const MAX_LIMIT: usize = 1000;

/// The admin routes over a [`Coordinator`], as a `tower::Service`: see the
/// [module docs](self). Cheap to clone; clones share the coordinator.
#[derive(Debug, Clone)]
pub struct AdminRouter {
    coordinator: Coordinator,
    prefix: Arc<str>,
    max_body: usize,
}

impl AdminRouter {
    /// The routes over `coordinator`, at the root (no prefix), reading
    /// bodies up to 64 KiB.
    pub fn new(coordinator: Coordinator) -> Self {
        Self {
            coordinator,
            prefix: Arc::from(""),
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// The path the routes live under (`"/admin/tx"` serves
    /// `/admin/tx/transactions…`); other paths are 404s. A missing leading
    /// `/` is added and trailing ones dropped. Leave it unset under axum's
    /// `nest_service`, which strips the prefix itself. Defaults to none.
    pub fn prefix(mut self, prefix: impl AsRef<str>) -> Self {
        let prefix = prefix.as_ref().trim_end_matches('/');
        self.prefix = if prefix.is_empty() || prefix.starts_with('/') {
            Arc::from(prefix)
        } else {
            Arc::from(format!("/{prefix}"))
        };
        self
    }

    /// The largest request body read; a larger one is refused with 413.
    /// Defaults to 64 KiB.
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
        let path = parts.uri.path();
        let Some(route) = self.strip(path).and_then(Route::parse) else {
            return Reject::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route {path}"),
            )
            .response();
        };
        let (allowed, allow) = route.method();
        if parts.method != allowed {
            return method_not_allowed(
                format!("{path} takes {allow}, not {}", parts.method),
                allow,
            );
        }
        match self.answer(route, parts.uri.query(), body).await {
            Ok(body) => respond(StatusCode::OK, body),
            Err(reject) => {
                if reject.status.is_server_error() {
                    tracing::warn!(method = %parts.method, path, status = reject.status.as_u16(), error = %reject.message, "admin request failed");
                }
                reject.response()
            }
        }
    }

    /// The path after the prefix, if it is under it.
    fn strip<'p>(&self, path: &'p str) -> Option<&'p str> {
        let rest = path.strip_prefix(&*self.prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    /// The JSON body of a 200 for `route`.
    async fn answer<B>(
        &self,
        route: Route<'_>,
        query: Option<&str>,
        body: B,
    ) -> Result<Bytes, Reject>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let c = &self.coordinator;
        match route {
            Route::List => {
                let filter = filter(query)?;
                to_json(&json!({ "transactions": c.list(&filter).await? }))
            }
            Route::Inspect(id) => to_json(&c.inspect(&tx_id(id)?).await?),
            Route::Decision(id) => {
                let id = tx_id(id)?;
                let decision = c.decision(&id).await?;
                to_json(&json!({ "tx": id, "decision": decision }))
            }
            Route::Act(id, action) => {
                let id = tx_id(id)?;
                let body = read_body(body, self.max_body).await?;
                let record = match action {
                    Action::Resume => {
                        parse_body::<NoFields>(&body)?;
                        c.resume(&id).await?
                    }
                    Action::ForceCompensate => {
                        parse_body::<NoFields>(&body)?;
                        c.force_compensate(&id).await?
                    }
                    Action::Resolve => {
                        let ResolveBody { note } = parse_body(&body)?;
                        if note.trim().is_empty() {
                            return Err(Reject::bad_request("body: \"note\" is empty"));
                        }
                        c.mark_resolved(&id, note).await?
                    }
                };
                tracing::info!(tx = %id, action = action.as_str(), state = record.state.as_str(), "admin action");
                to_json(&record)
            }
        }
    }
}

json_service!(AdminRouter);

// === routes ===

/// A path the router knows (after the prefix).
#[derive(Debug, Clone, Copy)]
enum Route<'a> {
    List,
    Inspect(&'a str),
    Decision(&'a str),
    Act(&'a str, Action),
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Resume,
    ForceCompensate,
    Resolve,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Resume => "resume",
            Self::ForceCompensate => "force-compensate",
            Self::Resolve => "resolve",
        }
    }
}

impl<'a> Route<'a> {
    fn parse(path: &'a str) -> Option<Self> {
        let rest = path.strip_prefix("/transactions")?;
        if rest.is_empty() {
            return Some(Self::List);
        }
        let rest = rest.strip_prefix('/')?;
        Some(match rest.split_once('/') {
            None => Self::Inspect(rest),
            Some((id, "decision")) => Self::Decision(id),
            Some((id, "resume")) => Self::Act(id, Action::Resume),
            Some((id, "force-compensate")) => Self::Act(id, Action::ForceCompensate),
            Some((id, "resolve")) => Self::Act(id, Action::Resolve),
            Some(_) => return None,
        })
    }

    /// The method it takes, and its name for `allow`.
    fn method(self) -> (Method, &'static str) {
        match self {
            Self::List | Self::Inspect(_) | Self::Decision(_) => (Method::GET, "GET"),
            Self::Act(..) => (Method::POST, "POST"),
        }
    }
}

/// The body of `resume` and `force-compensate`: nothing, or `{}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

/// The body of `resolve`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    note: String,
}

fn tx_id(id: &str) -> Result<TxId, Reject> {
    TxId::new(id).map_err(|e| Reject::bad_request(e.to_string()))
}

/// The list filter from the query string (see the module docs).
fn filter(query: Option<&str>) -> Result<TxFilter, Reject> {
    let mut filter = TxFilter::default();
    let (mut protocol, mut age, mut limit) = (None, None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key).ok_or_else(|| Reject::bad_request("malformed query string"))?;
        let value = decode(value).ok_or_else(|| Reject::query(&key, "malformed value"))?;
        match key.as_str() {
            "state" => {
                for s in value.split(',') {
                    let state = TxState::parse(s).ok_or_else(|| {
                        Reject::query(&key, format!("unknown state {s:?} (one of running, committing, aborting, committed, aborted, needs_intervention, resolved)"))
                    })?;
                    filter.states.push(state);
                }
            }
            "protocol" => {
                once(&key, &protocol)?;
                protocol = Some(PROTOCOLS.into_iter().find(|p| p.as_str() == value).ok_or_else(|| {
                    Reject::query(&key, format!("unknown protocol {value:?} (one of saga, tcc, two_phase, three_phase)"))
                })?);
            }
            "older_than_ms" => {
                once(&key, &age)?;
                age = Some(value.parse::<u64>().map_err(|_| {
                    Reject::query(&key, format!("{value:?} is not a number of milliseconds"))
                })?);
            }
            "limit" => {
                once(&key, &limit)?;
                limit = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            Reject::query(
                                &key,
                                format!("{value:?} is not a number from 1 to {MAX_LIMIT}"),
                            )
                        })?,
                );
            }
            _ => {
                return Err(Reject::query(
                    &key,
                    "unknown (known: state, protocol, older_than_ms, limit)",
                ));
            }
        }
    }
    filter.protocol = protocol;
    filter.created_before = age.map(|ms| now_ms().saturating_sub(ms));
    filter.limit = Some(limit.unwrap_or(DEFAULT_LIMIT));
    Ok(filter)
}

/// Fails if the parameter `key` was given before (`slot` is set).
fn once<T>(key: &str, slot: &Option<T>) -> Result<(), Reject> {
    match slot {
        Some(_) => Err(Reject::query(key, "given more than once")),
        None => Ok(()),
    }
}

const PROTOCOLS: [Protocol; 4] = [
    Protocol::Saga,
    Protocol::Tcc,
    Protocol::TwoPhase,
    Protocol::ThreePhase,
];

/// Percent-decodes a query component (`+` is a space); `None` if it is
/// malformed or not UTF-8.
fn decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?
            }
            b => b,
        });
    }
    String::from_utf8(out).ok()
}

/// `body` as JSON of `T`; an empty body reads as `{}`.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, Reject> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| Reject::bad_request(format!("body: {e}")))
}

// === answers ===

impl From<TxError> for Reject {
    fn from(e: TxError) -> Self {
        let (status, kind) = match &e {
            TxError::NotFound(_) | TxError::Store(StoreError::NotFound(_)) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            TxError::InvalidState { .. } => (StatusCode::CONFLICT, "invalid_state"),
            TxError::Store(StoreError::Conflict { .. }) => (StatusCode::CONFLICT, "conflict"),
            TxError::Store(StoreError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            TxError::Store(StoreError::Corrupt { .. }) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "store_corrupt")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_and_prefixes_strip_at_a_segment() {
        assert!(matches!(Route::parse("/transactions"), Some(Route::List)));
        assert!(matches!(
            Route::parse("/transactions/a-1"),
            Some(Route::Inspect("a-1"))
        ));
        assert!(matches!(
            Route::parse("/transactions/a-1/decision"),
            Some(Route::Decision("a-1"))
        ));
        assert!(matches!(
            Route::parse("/transactions/a-1/force-compensate"),
            Some(Route::Act("a-1", Action::ForceCompensate))
        ));
        for unknown in ["", "/", "/transactionsx", "/transactions/a/b", "/tx"] {
            assert!(Route::parse(unknown).is_none(), "{unknown}");
        }
        let router = |p: &str| {
            AdminRouter::new(
                Coordinator::new(
                    Arc::new(crate::store::MemoryTxStore::new()),
                    crate::coordinator::CoordinatorConfig::new(),
                )
                .unwrap(),
            )
            .prefix(p)
        };
        let admin = router("admin/tx/");
        assert_eq!(&*admin.prefix, "/admin/tx");
        assert_eq!(admin.strip("/admin/tx/transactions"), Some("/transactions"));
        assert_eq!(admin.strip("/admin/txs/transactions"), None);
        assert_eq!(admin.strip("/transactions"), None);
        assert_eq!(router("/").strip("/transactions"), Some("/transactions"));
    }

    #[test]
    fn query_components_are_percent_decoded() {
        assert_eq!(
            decode("running%2Caborted").as_deref(),
            Some("running,aborted")
        );
        assert_eq!(decode("a+b").as_deref(), Some("a b"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("%ff"), None, "not UTF-8");
    }

    #[test]
    fn the_filter_takes_each_key_and_names_a_bad_one() {
        let f = filter(Some("state=running,aborting&state=needs_intervention&protocol=two_phase&limit=5&older_than_ms=1000")).unwrap();
        assert_eq!(
            f.states,
            [
                TxState::Running,
                TxState::Aborting,
                TxState::NeedsIntervention
            ]
        );
        assert_eq!(f.protocol, Some(Protocol::TwoPhase));
        assert_eq!(f.limit, Some(5));
        let before = f.created_before.unwrap();
        assert!(before <= now_ms() - 1000 && before + 60_000 > now_ms() - 1000);
        assert_eq!(filter(None).unwrap().limit, Some(DEFAULT_LIMIT));
        for (query, key) in [
            ("state=runing", "\"state\""),
            ("protocol=xa", "\"protocol\""),
            ("protocol=saga&protocol=tcc", "\"protocol\""),
            ("limit=0", "\"limit\""),
            ("limit=1001", "\"limit\""),
            ("older_than_ms=-1", "\"older_than_ms\""),
            ("sort=asc", "\"sort\""),
        ] {
            let e = filter(Some(query)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(key), "{query}: {}", e.message);
        }
    }
}

//! The admin router over a coordinator (list, inspect, resume,
//! force-compensate, resolve, the decision route, every error status),
//! once over a real hyper server on loopback with the participant-side
//! decision client; and retention (`purge_finished`, `run_retention`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use rampart_core::testing::TestRecorder;
use rampart_transaction::admin::AdminRouter;
use rampart_transaction::coordinator::{Coordinator, CoordinatorConfig};
use rampart_transaction::http::{DecisionError, HttpParticipants};
use rampart_transaction::model::{Decision, Protocol, TxId, TxRecord, TxState, now_ms};
use rampart_transaction::participant::{BranchCall, BranchError, Participant, participant};
use rampart_transaction::saga::{Saga, Step};
use rampart_transaction::store::{MemoryTxStore, TxStore};
use rampart_transaction::testing::FaultyStore;
use rampart_transaction::two_phase::{Branch, TwoPhase};
use serde_json::{Value, json};
use tower::ServiceExt;

const HOUR: Duration = Duration::from_secs(3600);

/// A participant answering `{}`, or failing (retryable) while `failing`.
fn switchable(failing: Arc<AtomicBool>) -> Participant {
    participant(tower::service_fn(move |_: BranchCall| {
        let failing = failing.load(Ordering::SeqCst);
        async move {
            if failing {
                Err(BranchError::retryable("down"))
            } else {
                Ok(json!({}))
            }
        }
    }))
}

fn ok() -> Participant {
    switchable(Arc::new(AtomicBool::new(false)))
}

/// A coordinator on `store` with one attempt per call: participant `ok`,
/// and `bad` which fails while the returned switch is on.
fn coordinator(store: Arc<dyn TxStore>) -> (Coordinator, Arc<AtomicBool>) {
    let failing = Arc::new(AtomicBool::new(true));
    let config = CoordinatorConfig::new().name("admin").max_attempts(1);
    let c = Coordinator::new(store, config)
        .unwrap()
        .participant("ok", ok())
        .participant("bad", switchable(Arc::clone(&failing)));
    (c, failing)
}

/// a (on `ok`, compensated on `bad`) then b (on `bad`): b fails, a's
/// compensation fails, the saga parks.
fn parking_saga() -> Saga {
    Saga::builder("parks")
        .step(Step::new("a", "ok").compensation("bad"))
        .step(Step::new("b", "bad").after(["a"]))
        .build()
        .unwrap()
}

/// A parked transaction (before any commit decision).
async fn parked(c: &Coordinator) -> TxId {
    let outcome = c.start(&parking_saga(), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::NeedsIntervention);
    outcome.id
}

/// A transaction logged directly: `state`, created and written at `at`.
fn record(id: &str, protocol: Protocol, state: TxState, at: u64) -> TxRecord {
    TxRecord {
        id: TxId::new(id).unwrap(),
        protocol,
        state,
        decision: None,
        input: json!({}),
        plan: json!({}),
        reason: None,
        created_at: at,
        updated_at: at,
        deadline: None,
        version: 1,
        branches: vec![],
    }
}

/// Sends one request; the status, the `allow` header and the JSON body.
async fn send(
    router: &AdminRouter,
    method: Method,
    uri: &str,
    body: &str,
) -> (StatusCode, Option<String>, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/json",
        "{uri}"
    );
    let allow = response
        .headers()
        .get(header::ALLOW)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {bytes:?}"));
    (status, allow, json)
}

async fn get(router: &AdminRouter, uri: &str) -> (StatusCode, Value) {
    let (status, _, body) = send(router, Method::GET, uri, "").await;
    (status, body)
}

async fn post(router: &AdminRouter, uri: &str, body: &str) -> (StatusCode, Value) {
    let (status, _, body) = send(router, Method::POST, uri, body).await;
    (status, body)
}

/// The `kind` of an error answer.
fn kind(body: &Value) -> &str {
    body["error"]["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {body}"))
}

fn ids(body: &Value) -> Vec<&str> {
    body["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect()
}

// === list and inspect ===

#[tokio::test]
async fn the_list_filters_by_state_protocol_age_and_limit() {
    let store = Arc::new(MemoryTxStore::new());
    let now = now_ms();
    let old = now - 2 * 3_600_000;
    for r in [
        record("old-saga-run", Protocol::Saga, TxState::Running, old),
        record(
            "old-2pc-done",
            Protocol::TwoPhase,
            TxState::Committed,
            old + 1,
        ),
        record(
            "old-tcc-parked",
            Protocol::Tcc,
            TxState::NeedsIntervention,
            old + 2,
        ),
        record("new-saga-run", Protocol::Saga, TxState::Running, now),
        record(
            "new-2pc-abort",
            Protocol::TwoPhase,
            TxState::Aborting,
            now + 1,
        ),
    ] {
        store.create(&r, "someone", HOUR).await.unwrap();
    }
    let (c, _) = coordinator(store);
    let router = AdminRouter::new(c);

    let (status, all) = get(&router, "/transactions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ids(&all),
        [
            "old-saga-run",
            "old-2pc-done",
            "old-tcc-parked",
            "new-saga-run",
            "new-2pc-abort"
        ]
    );
    let first = &all["transactions"][0];
    assert_eq!(first["protocol"], "saga");
    assert_eq!(first["state"], "running");
    assert_eq!(first["created_at"], old);
    assert!(first.get("branches").is_none(), "a summary: {first}");

    let (_, running) = get(&router, "/transactions?state=running").await;
    assert_eq!(ids(&running), ["old-saga-run", "new-saga-run"]);
    let (_, some) = get(
        &router,
        "/transactions?state=running%2Caborting&state=committed",
    )
    .await;
    assert_eq!(
        ids(&some),
        [
            "old-saga-run",
            "old-2pc-done",
            "new-saga-run",
            "new-2pc-abort"
        ]
    );
    let (_, two_phase) = get(&router, "/transactions?protocol=two_phase").await;
    assert_eq!(ids(&two_phase), ["old-2pc-done", "new-2pc-abort"]);
    let (_, aged) = get(&router, "/transactions?older_than_ms=60000").await;
    assert_eq!(
        ids(&aged),
        ["old-saga-run", "old-2pc-done", "old-tcc-parked"]
    );
    let (_, mixed) = get(
        &router,
        "/transactions?state=running&protocol=saga&older_than_ms=60000&limit=100",
    )
    .await;
    assert_eq!(ids(&mixed), ["old-saga-run"]);
    let (_, limited) = get(&router, "/transactions?limit=2").await;
    assert_eq!(ids(&limited), ["old-saga-run", "old-2pc-done"]);

    for (query, key) in [
        ("state=runing", "state"),
        ("protocol=xa", "protocol"),
        ("older_than_ms=soon", "older_than_ms"),
        ("limit=0", "limit"),
        ("sort=id", "sort"),
    ] {
        let (status, body) = get(&router, &format!("/transactions?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(kind(&body), "bad_request");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("{key:?}")), "{query}: {message}");
    }
}

#[tokio::test]
async fn inspect_answers_the_record_as_logged() {
    let (c, _) = coordinator(Arc::new(MemoryTxStore::new()));
    let saga = Saga::builder("one")
        .step(Step::new("a", "ok"))
        .build()
        .unwrap();
    let outcome = c.start(&saga, json!({ "sku": 7 })).await.unwrap();
    let router = AdminRouter::new(c.clone());

    let (status, body) = get(&router, &format!("/transactions/{}", outcome.id)).await;
    assert_eq!(status, StatusCode::OK);
    let record: TxRecord = serde_json::from_value(body).unwrap();
    assert_eq!(record, c.inspect(&outcome.id).await.unwrap());
    assert_eq!(record.state, TxState::Committed);
    assert_eq!(record.input, json!({ "sku": 7 }));
    assert_eq!(record.branches.len(), 1);

    let (status, body) = get(&router, "/transactions/never-started").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(kind(&body), "not_found");
    let (status, body) = get(&router, "/transactions/a%20b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(kind(&body), "bad_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid id"),
        "{body}"
    );
}

// === admin actions ===

#[tokio::test]
async fn resume_drives_a_parked_transaction_on() {
    let (c, failing) = coordinator(Arc::new(MemoryTxStore::new()));
    let id = parked(&c).await;
    let router = AdminRouter::new(c.clone());
    let uri = format!("/transactions/{id}/resume");

    // still failing: parked again, answered as it is now
    let (status, body) = post(&router, &uri, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "needs_intervention");

    failing.store(false, Ordering::SeqCst);
    let (status, body) = post(&router, &uri, "{}").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "aborted");
    assert_eq!(c.inspect(&id).await.unwrap().state, TxState::Aborted);

    // a finished transaction cannot be resumed
    let (status, body) = post(&router, &uri, "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(kind(&body), "invalid_state");
    // nor an unknown one; and the body takes no fields
    let (status, body) = post(&router, "/transactions/nope/resume", "").await;
    assert_eq!((status, kind(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = post(&router, &uri, r#"{"force": true}"#).await;
    assert_eq!(
        (status, kind(&body)),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
}

#[tokio::test]
async fn force_compensate_undoes_a_parked_transaction_and_refuses_a_committed_one() {
    let (c, failing) = coordinator(Arc::new(MemoryTxStore::new()));
    let id = parked(&c).await;
    failing.store(false, Ordering::SeqCst);
    let router = AdminRouter::new(c.clone());

    let (status, body) = post(&router, &format!("/transactions/{id}/force-compensate"), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "aborted");
    assert_eq!(body["decision"], "abort");
    assert_eq!(body["reason"], "compensation forced by an operator");

    let committed = c.start(&parking_saga(), json!({})).await.unwrap();
    assert_eq!(committed.state, TxState::Committed);
    let (status, body) = post(
        &router,
        &format!("/transactions/{}/force-compensate", committed.id),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(kind(&body), "invalid_state");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("committed"),
        "{body}"
    );
}

#[tokio::test]
async fn resolve_needs_a_note_and_marks_a_parked_transaction_resolved() {
    let (c, _) = coordinator(Arc::new(MemoryTxStore::new()));
    let id = parked(&c).await;
    let router = AdminRouter::new(c.clone());
    let uri = format!("/transactions/{id}/resolve");

    for body in [
        "",
        "{}",
        r#"{"note": 3}"#,
        r#"{"note": "x", "by": "me"}"#,
        r#"{"note": " "}"#,
        "note",
    ] {
        let (status, answer) = post(&router, &uri, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(kind(&answer), "bad_request");
    }
    assert_eq!(
        c.inspect(&id).await.unwrap().state,
        TxState::NeedsIntervention,
        "nothing done"
    );

    let (status, body) = post(&router, &uri, r#"{"note": "refunded by hand"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "resolved");
    assert_eq!(body["reason"], "refunded by hand");
    let (status, body) = post(&router, &uri, r#"{"note": "again"}"#).await;
    assert_eq!(
        (status, kind(&body)),
        (StatusCode::CONFLICT, "invalid_state")
    );
}

// === the decision route ===

fn two_phase() -> TwoPhase {
    TwoPhase::builder("pay")
        .branch(Branch::new("ledger", "ok"))
        .branch(Branch::new("bank", "bad"))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_decision_route_answers_commit_abort_presumed_abort_and_undecided() {
    let memory = Arc::new(MemoryTxStore::new());
    let faulty = Arc::new(FaultyStore::new(memory.clone()));
    let (c, failing) = coordinator(faulty.clone());
    let router = AdminRouter::new(c.clone()).prefix("/admin/tx");

    // a prepare refused (one attempt): aborted
    let aborted = c.start_two_phase(&two_phase(), json!({})).await.unwrap();
    assert_eq!(aborted.state, TxState::Aborted);
    failing.store(false, Ordering::SeqCst);
    let committed = c.start_two_phase(&two_phase(), json!({})).await.unwrap();
    assert_eq!(committed.state, TxState::Committed);
    let running = record(
        "prepares-under-way",
        Protocol::TwoPhase,
        TxState::Running,
        now_ms(),
    );
    memory.create(&running, "elsewhere", HOUR).await.unwrap();

    let decision = |id: String| {
        let router = router.clone();
        async move { get(&router, &format!("/admin/tx/transactions/{id}/decision")).await }
    };
    for (id, expected) in [
        (committed.id.to_string(), json!("commit")),
        (aborted.id.to_string(), json!("abort")),
        ("never-logged".to_owned(), json!("abort")),
        ("prepares-under-way".to_owned(), Value::Null),
    ] {
        let (status, body) = decision(id.clone()).await;
        assert_eq!(status, StatusCode::OK, "{id}");
        assert_eq!(body, json!({ "tx": id, "decision": expected }));
    }

    // a log that cannot be read is never an abort
    faulty.set_down(true);
    let (status, body) = decision(committed.id.to_string()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(kind(&body), "store_unavailable");
    let (status, body) = get(&router, "/admin/tx/transactions").await;
    assert_eq!(
        (status, kind(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
    );
    faulty.set_down(false);

    // a record that does not decode
    faulty.corrupt(&committed.id);
    let (status, body) = decision(committed.id.to_string()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(kind(&body), "store_corrupt");
}

// === routing errors ===

#[tokio::test]
async fn unknown_paths_wrong_methods_and_large_bodies_are_refused() {
    let (c, _) = coordinator(Arc::new(MemoryTxStore::new()));
    let id = parked(&c).await;
    let router = AdminRouter::new(c.clone())
        .prefix("/admin/tx/")
        .max_body(64);

    for path in [
        "/transactions",
        "/admin/txs/transactions",
        "/admin/tx",
        "/admin/tx/",
        "/admin/tx/transaction",
        "/admin/tx/transactions/x/cancel",
        "/admin/tx/transactions/x/decision/y",
    ] {
        let (status, body) = get(&router, path).await;
        assert_eq!(
            (status, kind(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
    }
    for (method, path, allow) in [
        (Method::POST, "/admin/tx/transactions".to_owned(), "GET"),
        (
            Method::DELETE,
            format!("/admin/tx/transactions/{id}"),
            "GET",
        ),
        (
            Method::POST,
            format!("/admin/tx/transactions/{id}/decision"),
            "GET",
        ),
        (
            Method::GET,
            format!("/admin/tx/transactions/{id}/resume"),
            "POST",
        ),
        (
            Method::PUT,
            format!("/admin/tx/transactions/{id}/resolve"),
            "POST",
        ),
    ] {
        let (status, allowed, body) = send(&router, method.clone(), &path, "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(kind(&body), "method_not_allowed");
        assert_eq!(allowed.as_deref(), Some(allow), "{method} {path}");
    }
    let (status, body) = get(&router, "/admin/tx/transactions/bad%2Fid/decision").await;
    assert_eq!(
        (status, kind(&body)),
        (StatusCode::BAD_REQUEST, "bad_request")
    );

    // over max_body: with a length, and streamed without one
    let note = format!(r#"{{"note": "{}"}}"#, "x".repeat(100));
    let uri = format!("/admin/tx/transactions/{id}/resolve");
    let (status, body) = post(&router, &uri, &note).await;
    assert_eq!(
        (status, kind(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let chunks = Chunked(vec![Bytes::from(note.clone()); 2].into_iter());
    let request = Request::post(&uri).body(chunks).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        c.inspect(&id).await.unwrap().state,
        TxState::NeedsIntervention
    );
    // within it
    let (status, body) = post(&router, &uri, r#"{"note":"ok"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A body of chunks with no size hint (as a chunked upload).
struct Chunked(std::vec::IntoIter<Bytes>);

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.next().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

// === over a real hyper server ===

/// Serves `router` with hyper on a loopback port; its base URL.
async fn serve(router: AdminRouter) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let router = router.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| router.clone().oneshot(request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_hyper_on_loopback_with_the_participant_side_decision_client() {
    let memory = Arc::new(MemoryTxStore::new());
    let faulty = Arc::new(FaultyStore::new(memory.clone()));
    let (c, failing) = coordinator(faulty.clone());
    failing.store(false, Ordering::SeqCst);
    let committed = c.start_two_phase(&two_phase(), json!({})).await.unwrap();
    let running = record("undecided", Protocol::TwoPhase, TxState::Running, now_ms());
    memory.create(&running, "elsewhere", HOUR).await.unwrap();
    let parked_id = {
        failing.store(true, Ordering::SeqCst);
        let id = parked(&c).await;
        failing.store(false, Ordering::SeqCst);
        id
    };
    let base = serve(AdminRouter::new(c.clone()).prefix("/admin/tx")).await;
    let admin = format!("{base}/admin/tx");

    // plain hyper client: list, resolve with a body
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let response = client
        .request(
            Request::get(format!("{admin}/transactions?state=needs_intervention"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(ids(&body), [parked_id.as_str()]);
    let response = client
        .request(
            Request::post(format!("{admin}/transactions/{parked_id}/resolve"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::from(r#"{"note": "done by hand"}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        c.inspect(&parked_id).await.unwrap().state,
        TxState::Resolved
    );

    // the participant side: HttpParticipants::decision
    let http = HttpParticipants::new(Duration::from_secs(5));
    assert_eq!(
        http.decision(&admin, &committed.id).await.unwrap(),
        Some(Decision::Commit)
    );
    assert_eq!(
        http.decision(&format!("{admin}/"), &TxId::new("undecided").unwrap())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        http.decision(&admin, &TxId::new("never-logged").unwrap())
            .await
            .unwrap(),
        Some(Decision::Abort)
    );
    faulty.set_down(true);
    match http.decision(&admin, &committed.id).await {
        Err(DecisionError::Status { status, message }) => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(message.contains("unavailable"), "{message}");
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    faulty.set_down(false);
    // not the router's root
    assert!(matches!(
        http.decision(&base, &committed.id).await,
        Err(DecisionError::Status {
            status: StatusCode::NOT_FOUND,
            ..
        })
    ));
    assert!(matches!(
        http.decision("ftp://x/admin", &committed.id).await,
        Err(DecisionError::Url(_))
    ));
    // nobody listening
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    assert!(matches!(
        http.decision(&gone, &committed.id).await,
        Err(DecisionError::Unreachable(_))
    ));
}

// === retention ===

/// Logs, directly, transactions of every state last written at `at`
/// (named `{prefix}-{state}`).
async fn log_every_state(store: &dyn TxStore, prefix: &str, at: u64) {
    for state in [
        TxState::Running,
        TxState::Committing,
        TxState::Aborting,
        TxState::Committed,
        TxState::Aborted,
        TxState::NeedsIntervention,
        TxState::Resolved,
    ] {
        let id = format!("{prefix}-{}", state.as_str());
        store
            .create(&record(&id, Protocol::Saga, state, at), "someone", HOUR)
            .await
            .unwrap();
    }
}

/// The ids left in the store, sorted.
async fn left(c: &Coordinator) -> Vec<String> {
    let mut ids: Vec<String> = c
        .list(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id.to_string())
        .collect();
    ids.sort();
    ids
}

/// `purge_finished` with a one-hour retention on `store`: finished
/// transactions older than that go; active, parked and recent ones stay.
async fn purge_keeps_what_is_not_finished_and_old(store: Arc<dyn TxStore>) {
    let config = CoordinatorConfig::new().name("retention").retention(HOUR);
    let c = Coordinator::new(Arc::clone(&store), config).unwrap();
    log_every_state(&*store, "old", now_ms() - 2 * 3_600_000).await;
    log_every_state(&*store, "new", now_ms() - 60_000).await;

    assert_eq!(c.purge_finished().await.unwrap(), 3);
    let mut expected: Vec<String> = [
        "new-aborted",
        "new-aborting",
        "new-committed",
        "new-committing",
        "new-needs_intervention",
        "new-resolved",
        "new-running",
        "old-aborting",
        "old-committing",
        "old-needs_intervention",
        "old-running",
    ]
    .map(str::to_owned)
    .to_vec();
    expected.sort();
    assert_eq!(left(&c).await, expected);
    assert_eq!(
        c.purge_finished().await.unwrap(),
        0,
        "nothing more to purge"
    );
}

#[tokio::test]
async fn purge_finished_on_the_memory_store() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    purge_keeps_what_is_not_finished_and_old(Arc::new(MemoryTxStore::new())).await;
    assert_eq!(
        recorder
            .get("rampart_transaction_purged_total", &[("name", "retention")])
            .counter(),
        3
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_finished_on_a_sqlite_file() {
    let dir = std::env::temp_dir().join(format!("rampart-tx-admin-{}", TxId::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("tx.db").display());
    let store = rampart_transaction::store::SqlStoreConfig::new(url)
        .connect()
        .await
        .unwrap();
    purge_keeps_what_is_not_finished_and_old(Arc::new(store.clone())).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn run_retention_purges_every_interval_and_goes_on_after_a_failed_round() {
    let memory = Arc::new(MemoryTxStore::new());
    let faulty = Arc::new(FaultyStore::new(memory.clone()));
    let config = CoordinatorConfig::new()
        .retention(HOUR)
        .retention_interval(Duration::from_secs(600));
    let c = Coordinator::new(faulty.clone(), config).unwrap();
    let ancient = |id: &str| record(id, Protocol::Saga, TxState::Committed, 1_000);
    let there = |id: &'static str| {
        let memory = memory.clone();
        async move {
            memory
                .load(&TxId::new(id).unwrap())
                .await
                .unwrap()
                .is_some()
        }
    };
    memory.create(&ancient("first"), "x", HOUR).await.unwrap();
    let task = tokio::spawn({
        let c = c.clone();
        async move { c.run_retention().await }
    });

    // the first round runs at once
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!there("first").await);

    // the next one an interval later, not before
    memory.create(&ancient("second"), "x", HOUR).await.unwrap();
    tokio::time::sleep(Duration::from_secs(590)).await;
    assert!(there("second").await);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(!there("second").await);

    // a failed round is skipped, not the end of the loop
    memory.create(&ancient("third"), "x", HOUR).await.unwrap();
    faulty.set_down(true);
    let failed = faulty.failed();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(faulty.failed(), failed + 1, "one round failed");
    assert!(there("third").await);
    faulty.set_down(false);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(!there("third").await);
    assert!(!task.is_finished());
    task.abort();
}

#[test]
fn retention_settings_are_validated() {
    let store = || -> Arc<dyn TxStore> { Arc::new(MemoryTxStore::new()) };
    for config in [
        CoordinatorConfig::new().retention(Duration::ZERO),
        CoordinatorConfig::new().retention_interval(Duration::ZERO),
    ] {
        assert!(Coordinator::new(store(), config).is_err());
    }
}

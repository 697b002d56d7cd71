//! `ParticipantServer`, the participant's end of `HttpParticipants`: every
//! outcome keeps its kind across HTTP, malformed calls never reach the
//! participant, and a saga runs end to end over loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rampart_transaction::coordinator::{Coordinator, CoordinatorConfig};
use rampart_transaction::http::{HttpParticipants, ParticipantServer};
use rampart_transaction::model::{BranchId, Op, TxId, TxState};
use rampart_transaction::participant::{
    Attempt, BranchCall, BranchError, Participant, participant,
};
use rampart_transaction::saga::{Saga, Step};
use rampart_transaction::store::MemoryTxStore;
use rampart_transaction::testing::EffectLedger;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Serves `server` with hyper on a loopback port; its base URL.
async fn serve(server: ParticipantServer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let server = server.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| server.clone().oneshot(request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

/// A participant answering as `answer` says, counting its calls.
fn answering(
    calls: Arc<AtomicUsize>,
    answer: impl Fn(&BranchCall) -> Result<Value, BranchError> + Clone + Send + Sync + 'static,
) -> Participant {
    participant(tower::service_fn(move |call: BranchCall| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(answer(&call))
    }))
}

fn call(payload: Value) -> BranchCall {
    BranchCall {
        tx: TxId::new("t-1").unwrap(),
        branch: BranchId::new("reserve").unwrap(),
        op: Op::Action,
        payload,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_keeps_its_kind_across_http() {
    let calls = Arc::new(AtomicUsize::new(0));
    let p = answering(Arc::clone(&calls), |call| {
        match call.payload["answer"].as_str().unwrap() {
            "ok" => Ok(json!({ "echo": call.payload, "op": call.op.as_str() })),
            "terminal" => Err(BranchError::terminal("out of stock")),
            "retryable" => Err(BranchError::retryable("busy")),
            _ => Err(BranchError::in_doubt("lost the disk mid-write")),
        }
    });
    let url = format!("{}/stock/reserve", serve(ParticipantServer::new(p)).await);
    let client = HttpParticipants::new(Duration::from_secs(5))
        .participant(&url)
        .unwrap();
    let judged = |answer: &str| {
        let client = client.clone();
        let payload = json!({ "answer": answer });
        async move { Attempt::judge(client.oneshot(call(payload)).await) }
    };
    assert_eq!(
        judged("ok").await,
        Attempt::Success(json!({ "echo": { "answer": "ok" }, "op": "action" }))
    );
    assert!(matches!(judged("terminal").await, Attempt::Terminal(m) if m.contains("out of stock")));
    assert!(matches!(judged("retryable").await, Attempt::Retryable(m) if m.contains("busy")));
    assert!(matches!(judged("in_doubt").await, Attempt::InDoubt(m) if m.contains("mid-write")));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

/// `request` through a server whose participant counts its calls: the
/// status, the body as JSON, and whether the participant was called.
async fn answer(server_max: usize, request: http::Request<Full<Bytes>>) -> (u16, Value, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let p = answering(Arc::clone(&calls), |_| Ok(Value::Null));
    let response = ParticipantServer::new(p)
        .max_body(server_max)
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let allow = response.headers().get("allow").cloned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let mut body: Value = serde_json::from_slice(&body).unwrap();
    if let Some(allow) = allow {
        body["allow"] = json!(allow.to_str().unwrap());
    }
    (status, body, calls.load(Ordering::SeqCst))
}

fn post(headers: &[(&str, &str)], body: &str) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::post("/p");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

const KEY: [(&str, &str); 3] = [
    ("x-rampart-tx-id", "t-1"),
    ("x-rampart-branch-id", "reserve"),
    ("x-rampart-op", "action"),
];

#[tokio::test]
async fn malformed_calls_are_refused_before_the_participant_runs() {
    // a well-formed call reaches it; an empty body is a null payload
    let (status, body, called) = answer(1024, post(&KEY, "")).await;
    assert_eq!((status, body, called), (200, Value::Null, 1));

    let missing = post(&KEY[..2], "{}");
    let (status, body, called) = answer(1024, missing).await;
    assert_eq!((status, called), (400, 0));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-rampart-op")
    );

    let bad_op = post(&[KEY[0], KEY[1], ("x-rampart-op", "launch")], "{}");
    let (status, body, called) = answer(1024, bad_op).await;
    assert_eq!((status, called), (400, 0));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("launch")
    );

    let bad_id = post(&[("x-rampart-tx-id", "a b"), KEY[1], KEY[2]], "{}");
    assert_eq!(answer(1024, bad_id).await.0, 400);

    let (status, body, called) = answer(1024, post(&KEY, "{not json")).await;
    assert_eq!((status, called), (400, 0));
    assert_eq!(body["error"]["kind"], "bad_request");

    let big = "x".repeat(2048);
    let (status, _, called) = answer(1024, post(&KEY, &format!("\"{big}\""))).await;
    assert_eq!((status, called), (413, 0));

    let get = http::Request::get("/p")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, body, called) = answer(1024, get).await;
    assert_eq!((status, called), (405, 0));
    assert_eq!(body["allow"], "POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_runs_end_to_end_over_loopback_http() {
    let ledger = EffectLedger::new();
    let base = serve(ParticipantServer::new(ledger.participant())).await;
    let http = HttpParticipants::new(Duration::from_secs(5));
    let coordinator = Coordinator::new(Arc::new(MemoryTxStore::new()), CoordinatorConfig::new())
        .unwrap()
        .participant("stock", http.participant(&format!("{base}/stock")).unwrap())
        .participant("money", http.participant(&format!("{base}/money")).unwrap());
    let saga = Saga::builder("order")
        .step(Step::new("reserve", "stock"))
        .step(Step::new("charge", "money").after(["reserve"]))
        .build()
        .unwrap();
    let done = coordinator
        .start(&saga, json!({ "sku": "a-1" }))
        .await
        .unwrap();
    assert_eq!(done.state, TxState::Committed);
    assert_eq!(done.outputs["charge"]["op"], "action");
    let record = coordinator.inspect(&done.id).await.unwrap();
    ledger.check(&record).unwrap();
    assert_eq!(ledger.applied(&done.id).len(), 2);

    // a refusal over HTTP is terminal: the saga compensates what ran
    ledger.refuse("charge");
    let undone = coordinator
        .start(&saga, json!({ "sku": "a-2" }))
        .await
        .unwrap();
    assert_eq!(undone.state, TxState::Aborted);
    let record = coordinator.inspect(&undone.id).await.unwrap();
    ledger.check(&record).unwrap();
    let applied = ledger.applied(&undone.id);
    assert!(applied.contains(&(BranchId::new("reserve").unwrap(), Op::Compensate)));
    let charge = record
        .branch(&BranchId::new("charge").unwrap(), Op::Action)
        .unwrap();
    assert_eq!(charge.attempts, 1, "a terminal refusal is not retried");
}

//! HTTP participants against a real server on loopback: the idempotency
//! key in the headers, the payload as JSON, and every kind of answer
//! judged into its typed outcome.

use std::time::Duration;

use rampart_transaction::http::HttpParticipants;
use rampart_transaction::model::{BranchId, Op, TxId};
use rampart_transaction::participant::{Attempt, BranchCall};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower::ServiceExt;

/// What the server does with one request.
#[derive(Clone, Copy)]
enum Reply {
    /// Answers with this status line and body.
    With(&'static str, &'static str),
    /// Reads the request and closes the connection without answering.
    Hang,
    /// Reads the request and never answers.
    Silent,
}

/// A one-request-per-connection HTTP/1.1 server answering `reply`; every
/// request it read (head and body) is sent on the channel.
async fn server(reply: Reply) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/orders/reserve", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 8192];
                let mut read = 0;
                // read the head, then the body by its Content-Length
                loop {
                    let n = socket.read(&mut buf[read..]).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    read += n;
                    let text = String::from_utf8_lossy(&buf[..read]).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if read >= end + 4 + len {
                            let _ = tx.send(text);
                            break;
                        }
                    }
                }
                match reply {
                    Reply::With(status, body) => {
                        let answer = format!(
                            "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: application/json\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(answer.as_bytes()).await;
                    }
                    Reply::Hang => {}
                    Reply::Silent => tokio::time::sleep(Duration::from_secs(60)).await,
                }
            });
        }
    });
    (url, rx)
}

fn call() -> BranchCall {
    BranchCall {
        tx: TxId::new("order-42").unwrap(),
        branch: BranchId::new("reserve-stock").unwrap(),
        op: Op::Action,
        payload: json!({"sku": "A-1", "qty": 2}),
    }
}

async fn attempt(url: &str) -> Attempt {
    let participants = HttpParticipants::new(Duration::from_millis(300));
    let p = participants.participant(url).unwrap();
    Attempt::judge(p.oneshot(call()).await)
}

#[tokio::test]
async fn posts_the_payload_with_the_idempotency_key() {
    let (url, mut seen) = server(Reply::With("200 OK", r#"{"reserved":2}"#)).await;
    assert_eq!(
        attempt(&url).await,
        Attempt::Success(json!({"reserved": 2}))
    );
    let request = seen.recv().await.unwrap();
    assert!(
        request.starts_with("POST /orders/reserve HTTP/1.1\r\n"),
        "{request}"
    );
    let lower = request.to_ascii_lowercase();
    assert!(lower.contains("x-rampart-tx-id: order-42\r\n"), "{request}");
    assert!(
        lower.contains("x-rampart-branch-id: reserve-stock\r\n"),
        "{request}"
    );
    assert!(lower.contains("x-rampart-op: action\r\n"), "{request}");
    assert!(
        request.ends_with(r#"{"qty":2,"sku":"A-1"}"#)
            || request.ends_with(r#"{"sku":"A-1","qty":2}"#),
        "{request}"
    );
}

#[tokio::test]
async fn answers_are_judged_by_status() {
    let (url, _seen) = server(Reply::With("409 Conflict", r#"{"error":"out of stock"}"#)).await;
    assert!(matches!(attempt(&url).await, Attempt::Terminal(m) if m.contains("out of stock")));
    let (url, _seen) = server(Reply::With("503 Service Unavailable", "")).await;
    assert!(matches!(attempt(&url).await, Attempt::Retryable(_)));
    let (url, _seen) = server(Reply::With("500 Internal Server Error", "")).await;
    assert!(matches!(attempt(&url).await, Attempt::InDoubt(_)));
    let (url, _seen) = server(Reply::With("200 OK", "not json")).await;
    assert!(matches!(attempt(&url).await, Attempt::InDoubt(m) if m.contains("not JSON")));
}

#[tokio::test]
async fn lost_connections_and_silence_are_in_doubt_refused_ones_retryable() {
    let (url, _seen) = server(Reply::Hang).await;
    assert!(matches!(attempt(&url).await, Attempt::InDoubt(_)));
    let (url, _seen) = server(Reply::Silent).await;
    assert!(matches!(attempt(&url).await, Attempt::InDoubt(m) if m.contains("no answer")));
    // a port nothing listens on: the call never left
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/x", closed.local_addr().unwrap());
    drop(closed);
    assert!(matches!(attempt(&url).await, Attempt::Retryable(m) if m.contains("connect")));
}

#[test]
fn only_http_urls_are_accepted() {
    let participants = HttpParticipants::default();
    assert!(
        participants
            .participant("https://example.invalid/x")
            .is_err()
    );
    assert!(participants.participant("not a url").is_err());
    assert!(participants.participant("/relative").is_err());
}

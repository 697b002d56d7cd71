//! The remaining deadline travels with each try: `grpc-timeout` for gRPC,
//! the configured header otherwise.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_core::BoxError;
use rampart_retry::{Backoff, RetryConfig};
use tokio::time::sleep;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

/// The `grpc-timeout` and `x-request-timeout-ms` headers of each try.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

type Upstream = BoxCloneService<http::Request<()>, http::Response<()>, BoxError>;

/// Answers 503 `fails` times (after `latency`), then 200; records the
/// deadline headers each try carried.
fn recording(fails: usize, latency: Duration) -> (Upstream, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let svc = service_fn(move |req: http::Request<()>| {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let mut log = log.lock().unwrap();
        log.push((header("grpc-timeout"), header("x-request-timeout-ms")));
        let status = if log.len() <= fails { 503 } else { 200 };
        async move {
            sleep(latency).await;
            Ok::<_, BoxError>(http::Response::builder().status(status).body(()).unwrap())
        }
    });
    (BoxCloneService::new(svc), seen)
}

fn config() -> RetryConfig {
    RetryConfig::new()
        .no_budget()
        .max_attempts(3)
        .backoff(Backoff::Constant { delay: 100 * MS })
}

fn grpc() -> http::Request<()> {
    http::Request::post("/pkg.Svc/Get")
        .header("content-type", "application/grpc+proto")
        .header("idempotency-key", "k1")
        .body(())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn grpc_requests_carry_the_time_each_try_has_left() {
    let (svc, seen) = recording(2, 50 * MS);
    let svc = config()
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap()
        .for_http()
        .layer(svc);
    assert_eq!(svc.oneshot(grpc()).await.unwrap().status(), 200);
    let seen = seen.lock().unwrap();
    let grpc: Vec<_> = seen.iter().map(|(g, _)| g.clone().unwrap()).collect();
    // each try: 50 ms of latency, then 100 ms of backoff
    assert_eq!(grpc, ["1000000u", "850000u", "700000u"]);
    assert!(
        seen.iter().all(|(_, h)| h.is_none()),
        "no plain header on gRPC"
    );
}

#[tokio::test(start_paused = true)]
async fn the_per_try_timeout_is_sent_when_shorter_than_the_deadline() {
    let (svc, seen) = recording(1, 10 * MS);
    let svc = config()
        .per_try_timeout(200 * MS)
        .deadline(Duration::from_secs(1))
        .deadline_header("x-request-timeout-ms")
        .build()
        .unwrap()
        .for_http()
        .layer(svc);
    let res = svc.oneshot(http::Request::get("/").body(()).unwrap()).await;
    assert_eq!(res.unwrap().status(), 200);
    let seen = seen.lock().unwrap();
    let plain: Vec<_> = seen.iter().map(|(_, h)| h.clone().unwrap()).collect();
    assert_eq!(plain, ["200", "200"]);
}

#[tokio::test(start_paused = true)]
async fn a_shorter_deadline_from_upstream_is_kept() {
    let (svc, seen) = recording(0, MS);
    let svc = config()
        .deadline(Duration::from_secs(1))
        .deadline_header("x-request-timeout-ms")
        .build()
        .unwrap()
        .for_http()
        .layer(svc);
    let mut req = grpc();
    req.headers_mut()
        .insert("grpc-timeout", http::HeaderValue::from_static("300m"));
    svc.clone().oneshot(req).await.unwrap();
    let mut longer = grpc();
    longer
        .headers_mut()
        .insert("grpc-timeout", http::HeaderValue::from_static("5S"));
    svc.clone().oneshot(longer).await.unwrap();
    let mut garbage = http::Request::get("/").body(()).unwrap();
    garbage.headers_mut().insert(
        "x-request-timeout-ms",
        http::HeaderValue::from_static("soon"),
    );
    svc.oneshot(garbage).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0.as_deref(), Some("300m"), "shorter upstream kept");
    assert_eq!(
        seen[1].0.as_deref(),
        Some("1000000u"),
        "longer one replaced"
    );
    assert_eq!(seen[2].1.as_deref(), Some("1000"), "garbage replaced");
}

#[tokio::test(start_paused = true)]
async fn plain_http_gets_no_header_unless_configured_and_none_without_a_deadline() {
    let (svc, seen) = recording(0, MS);
    let with_deadline = config()
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap()
        .for_http()
        .layer(svc.clone());
    with_deadline
        .oneshot(http::Request::get("/").body(()).unwrap())
        .await
        .unwrap();
    let without = config()
        .deadline_header("x-request-timeout-ms")
        .build()
        .unwrap()
        .for_http()
        .layer(svc);
    without.oneshot(grpc()).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [(None, None), (None, None)]);
}

#[test]
fn an_invalid_header_name_is_refused() {
    let err = RetryConfig::new()
        .deadline_header("bad header")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "deadline_header");
}

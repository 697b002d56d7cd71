//! The HTTP and TCP probes against real sockets on loopback (real time,
//! short timeouts), and a checker driving the registry from a real HTTP
//! server.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_discovery::health::{
    CheckKind, HealthCheck, HealthChecker, HttpCheck, HttpProbe, Probe, ProbeError, StatusRange,
    TcpCheck, TcpProbe,
};
use rampart_discovery::registry::{HealthStatus, Instance, MemoryRegistry, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A hand-written HTTP/1.1 server answering every request with the
/// current `status` (and `body_len` bytes of body), recording each
/// request's head.
struct Server {
    port: u16,
    status: Arc<AtomicU16>,
    heads: Arc<Mutex<Vec<String>>>,
}

async fn server(body_len: usize) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let status = Arc::new(AtomicU16::new(200));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (s, h) = (status.clone(), heads.clone());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (status, heads) = (s.clone(), h.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                heads
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).into_owned());
                let status = status.load(Ordering::SeqCst);
                let head = format!("HTTP/1.1 {status} X\r\ncontent-length: {body_len}\r\n\r\n");
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&vec![b'x'; body_len]).await;
            });
        }
    });
    Server {
        port,
        status,
        heads,
    }
}

/// A server that reads each request, writes `reply` (possibly nothing,
/// possibly part of a response) and then holds the connection open
/// without another byte.
async fn holding_server(reply: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            if !reply.is_empty() {
                let mut chunk = [0u8; 1024];
                let _ = socket.read(&mut chunk).await;
                let _ = socket.write_all(&reply).await;
            }
            held.push(socket);
        }
    });
    port
}

/// A server that accepts connections and never answers.
async fn silent_server() -> u16 {
    holding_server(Vec::new()).await
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

fn target(port: u16) -> Instance {
    Instance::new("app-1", "shop/app", "127.0.0.1", port).unwrap()
}

fn http(check: HttpCheck) -> HttpProbe {
    HttpProbe::new(check.timeout(Duration::from_millis(500)))
}

#[tokio::test]
async fn http_probe_passes_on_200_and_fails_on_503() {
    let server = server(2).await;
    let probe = http(HttpCheck::new().path("/healthz?full=1"));
    probe.probe(&target(server.port)).await.unwrap();
    server.status.store(503, Ordering::SeqCst);
    match probe.probe(&target(server.port)).await {
        Err(ProbeError::Status(503)) => {}
        other => panic!("expected status 503, got {other:?}"),
    }
    let heads = server.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 2);
    let head = heads[0].to_ascii_lowercase();
    assert!(
        head.starts_with("get /healthz?full=1 http/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("host: 127.0.0.1:{}\r\n", server.port)),
        "{head}"
    );
    assert!(head.contains("connection: close\r\n"), "{head}");
}

#[tokio::test]
async fn http_probe_checks_the_expected_statuses_and_sends_the_host() {
    let server = server(0).await;
    let probe = http(
        HttpCheck::new()
            .expected_statuses(vec![StatusRange::single(204)])
            .host("app.internal"),
    );
    match probe.probe(&target(server.port)).await {
        Err(ProbeError::Status(200)) => {}
        other => panic!("200 is not expected here, got {other:?}"),
    }
    server.status.store(204, Ordering::SeqCst);
    probe.probe(&target(server.port)).await.unwrap();
    let head = server.heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.contains("host: app.internal\r\n"), "{head}");

    // a redirect fails by default
    server.status.store(302, Ordering::SeqCst);
    assert!(matches!(
        http(HttpCheck::new()).probe(&target(server.port)).await,
        Err(ProbeError::Status(302))
    ));
}

/// A server that answers 200 with a 1 MiB body, sends 4 KiB of it and
/// stalls.
async fn stalling_server() -> u16 {
    let mut reply = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", 1 << 20).into_bytes();
    reply.extend_from_slice(&[b'x'; 4096]);
    holding_server(reply).await
}

#[tokio::test]
async fn http_probe_reads_the_body_only_up_to_its_cap() {
    let port = stalling_server().await;
    // 1 KiB is read and the connection closed: the stall does not matter
    http(HttpCheck::new().max_body_bytes(1024))
        .probe(&target(port))
        .await
        .unwrap();
    // reading the whole body waits for bytes that never come
    assert!(matches!(
        http(HttpCheck::new().max_body_bytes(1 << 20))
            .probe(&target(port))
            .await,
        Err(ProbeError::Timeout(_))
    ));
}

#[tokio::test]
async fn http_probe_times_out_on_a_server_that_never_answers() {
    let port = silent_server().await;
    let probe = HttpProbe::new(HttpCheck::new().timeout(Duration::from_millis(200)));
    let start = Instant::now();
    match probe.probe(&target(port)).await {
        Err(ProbeError::Timeout(t)) => assert_eq!(t, Duration::from_millis(200)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn probes_fail_to_connect_to_a_closed_port() {
    let port = closed_port().await;
    let tcp = TcpProbe::new(TcpCheck::new().timeout(Duration::from_millis(500)));
    match tcp.probe(&target(port)).await {
        Err(ProbeError::Connect(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("expected a refused connect, got {other:?}"),
    }
    assert!(matches!(
        http(HttpCheck::new()).probe(&target(port)).await,
        Err(ProbeError::Connect(_))
    ));
    // and pass against a listener
    let open = silent_server().await;
    tcp.probe(&target(open)).await.unwrap();
}

#[tokio::test]
async fn a_checker_marks_a_real_server_unhealthy_and_healthy_again() {
    let server = server(2).await;
    let registry = Arc::new(MemoryRegistry::new());
    registry
        .register(target(server.port), Duration::from_secs(60))
        .await
        .unwrap();
    let check = HealthCheck::new()
        .kind(CheckKind::Http(
            HttpCheck::new().timeout(Duration::from_millis(500)),
        ))
        .interval(Duration::from_millis(20))
        .healthy_threshold(1)
        .unhealthy_threshold(2);
    let checker = HealthChecker::new(registry.clone(), "shop/app".parse().unwrap(), check)
        .spawn()
        .await
        .unwrap();
    let service = "shop/app".parse().unwrap();
    let health = || async { registry.discover(&service).await.unwrap().instances[0].health() };
    let wait_for = |want: HealthStatus| {
        let checker = checker.clone();
        async move {
            for _ in 0..200 {
                if checker.status("app-1") == Some(want) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("never became {want:?}");
        }
    };
    wait_for(HealthStatus::Healthy).await;
    server.status.store(503, Ordering::SeqCst);
    wait_for(HealthStatus::Unhealthy).await;
    assert_eq!(health().await, HealthStatus::Unhealthy);
    let h = checker.instance("app-1").unwrap();
    assert_eq!(
        h.last_error.as_deref(),
        Some("health probe got unexpected status 503")
    );
    server.status.store(200, Ordering::SeqCst);
    wait_for(HealthStatus::Healthy).await;
    assert_eq!(health().await, HealthStatus::Healthy);
    checker.stop();
}

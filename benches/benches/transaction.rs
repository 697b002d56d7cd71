//! Saga throughput and latency on the durable log (issue 7).
//!
//! A 3-step saga (`reserve → charge → ship`) whose participants are no-op
//! HTTP endpoints on loopback (a keep-alive HTTP/1.1 responder in this
//! process answering `200 {}`), coordinated on SQLite (a file, WAL,
//! `synchronous = FULL`) and on PostgreSQL, at concurrency 1 and 64. Each
//! case runs for a fixed time after a warm-up and prints one line:
//!
//! ```text
//! transaction <sqlite|postgres> concurrency=<n> tx_per_s=<n> p50_ms=<n> p99_ms=<n>
//! ```
//!
//! Run with `cargo bench -p rampart-benches --bench transaction`
//! (`RAMPART_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`;
//! `scripts/services.sh` starts it; the PostgreSQL cases are skipped,
//! saying so, when it is unreachable). A filter after `--` runs only the
//! cases whose name (`sqlite/64`, `postgres/1`, ...) contains it:
//! `cargo bench -p rampart-benches --bench transaction -- sqlite/64`.

use std::sync::Arc;
use std::time::Duration;

use rampart_transaction::coordinator::{Coordinator, CoordinatorConfig};
use rampart_transaction::http::HttpParticipants;
use rampart_transaction::model::TxState;
use rampart_transaction::saga::{Saga, Step};
use rampart_transaction::store::{SqlStoreConfig, TxStore};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

mod common;
use common::{note, now};

/// How long each case is measured, after its warm-up.
const MEASURE: Duration = Duration::from_secs(5);
const WARM_UP: Duration = Duration::from_secs(1);

/// A keep-alive HTTP/1.1 server answering every request `200 {}`; its
/// address.
async fn no_op_participant() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut read = BufReader::new(read);
                let mut line = String::new();
                loop {
                    // the head: request line and headers, then the body
                    let mut length = 0usize;
                    loop {
                        line.clear();
                        match read.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if read.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if write.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn saga() -> Saga {
    Saga::builder("bench-order")
        .step(Step::new("reserve", "stock"))
        .step(Step::new("charge", "payment").after(["reserve"]))
        .step(Step::new("ship", "shipping").after(["charge"]))
        .build()
        .expect("a valid saga")
}

/// Runs sagas at `concurrency` for `MEASURE` and prints the line.
async fn case(engine: &str, store: Arc<dyn TxStore>, base: &str, concurrency: usize) {
    let participants = HttpParticipants::new(Duration::from_secs(5));
    let mut coordinator = Coordinator::new(store, CoordinatorConfig::new()).expect("a coordinator");
    for (name, path) in [
        ("stock", "/reserve"),
        ("payment", "/charge"),
        ("shipping", "/ship"),
    ] {
        let p = participants
            .participant(&format!("{base}{path}"))
            .expect("a participant url");
        coordinator = coordinator.participant(name, p);
    }
    let saga = Arc::new(saga());
    let run = |length: Duration| {
        let coordinator = coordinator.clone();
        let saga = saga.clone();
        async move {
            let until = now() + length;
            let slots = Arc::new(Semaphore::new(concurrency));
            let mut tasks = tokio::task::JoinSet::new();
            let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
            while now() < until {
                let permit = slots.clone().acquire_owned().await.expect("open");
                let coordinator = coordinator.clone();
                let saga = saga.clone();
                let latencies = latencies.clone();
                tasks.spawn(async move {
                    let start = now();
                    let outcome = coordinator
                        .start(&saga, json!({ "order": 1, "qty": 2 }))
                        .await
                        .expect("a saga runs");
                    assert_eq!(outcome.state, TxState::Committed);
                    latencies
                        .lock()
                        .expect("not poisoned")
                        .push(start.elapsed());
                    drop(permit);
                });
                while let Some(done) = tasks.try_join_next() {
                    done.expect("a saga task");
                }
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("a saga task");
            }
            std::mem::take(&mut *latencies.lock().expect("not poisoned"))
        }
    };
    run(WARM_UP).await;
    let started = now();
    let mut latencies = run(MEASURE).await;
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1e3
    };
    let line = format!(
        "transaction {engine} concurrency={concurrency} tx_per_s={:.0} p50_ms={:.2} p99_ms={:.2}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    );
    print_line(&line);
}

#[allow(clippy::print_stdout, reason = "the bench's result lines")]
fn print_line(line: &str) {
    println!("{line}");
}

/// A fresh SQLite log at `path`.
async fn sqlite_store(path: &std::path::Path) -> Arc<dyn TxStore> {
    let store = SqlStoreConfig::new(format!("sqlite://{}", path.display()))
        .connect()
        .await
        .expect("a SQLite log");
    Arc::new(store)
}

/// The PostgreSQL log, in schema `rampart_bench` (emptied first), or why
/// there is none.
async fn postgres_store() -> Result<Arc<dyn TxStore>, String> {
    let url = std::env::var("RAMPART_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let store = SqlStoreConfig::new(url.clone())
        .schema("rampart_bench")
        .pool_size(16)
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| format!("PostgreSQL at {url} is unreachable ({e})"))?;
    store.purge(u64::MAX).await.map_err(|e| e.to_string())?;
    Ok(Arc::new(store))
}

/// The cases to run: those whose `engine/concurrency` contains the first
/// argument that is not a flag (cargo passes `--bench`), all without one.
fn selected() -> impl Fn(&str, usize) -> bool {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    move |engine, concurrency| {
        filter
            .as_deref()
            .is_none_or(|f| format!("{engine}/{concurrency}").contains(f))
    }
}

fn main() {
    let selected = selected();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let base = no_op_participant().await;
        // SQLite: a fresh file per run
        let dir = std::env::temp_dir().join(format!("rampart-bench-tx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        for concurrency in [1, 64].into_iter().filter(|&c| selected("sqlite", c)) {
            let path = dir.join(format!("log-{concurrency}.db"));
            let store = sqlite_store(&path).await;
            case("sqlite", store, &base, concurrency).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
        for concurrency in [1, 64].into_iter().filter(|&c| selected("postgres", c)) {
            match postgres_store().await {
                Ok(store) => case("postgres", store, &base, concurrency).await,
                Err(e) => {
                    note(&format!(
                        "transaction postgres: skipped: {e}; start it with scripts/services.sh (or set RAMPART_POSTGRES_URL)"
                    ));
                    break;
                }
            }
        }
    });
}

//! etcd for the tests: the shared server's endpoints, a unique key prefix
//! per test, and a private etcd a test may kill and restart.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The shared etcd: `RAMPART_ETCD_ENDPOINTS` (comma separated), default
/// `http://127.0.0.1:2379`.
pub fn endpoints() -> Vec<String> {
    std::env::var("RAMPART_ETCD_ENDPOINTS")
        .unwrap_or_else(|_| "http://127.0.0.1:2379".to_owned())
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "/rampart-test/{test}/{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private etcd (`/usr/bin/etcd`) on free loopback ports with a temp
/// data dir, which the test may kill and restart on the same data. Killed
/// and removed on drop.
pub struct OwnEtcd {
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnEtcd {
    /// Starts one and waits until it answers.
    pub async fn start(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "rampart-etcd-{test}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut etcd = Self {
            client_port: free_port(),
            peer_port: free_port(),
            dir,
            child: None,
        };
        etcd.restart().await;
        etcd
    }

    /// Its client URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills it with SIGKILL (no clean shutdown) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts it (again, on the same ports and data) and waits until it
    /// answers a read.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("/usr/bin/etcd")
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("/usr/bin/etcd starts");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = etcd_client::Client::connect([client.as_str()], None).await
                && tokio::time::timeout(Duration::from_secs(1), c.get("/", None))
                    .await
                    .is_ok_and(|r| r.is_ok())
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "own etcd did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OwnEtcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! The Redis tier in cluster mode, against a private three-master Redis
//! Cluster the test starts itself (`redis-server` and `redis-cli` on the
//! PATH; `scripts/services.sh` installs them) and kills when it ends.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::redis::{
    eventually, invalidation_is_heard, next_key, raw_connection, subscribed, unique_prefix,
};
use rampart_cache::remote::{GuardConfig, RedisCache, RedisConfig, RemoteCache};
use tokio::process::{Child, Command};

const MISSING: &str = "scripts/services.sh installs redis-server and redis-cli";

/// Three cluster-enabled `redis-server`s, joined into one cluster of three
/// masters, killed (and their directory removed) when dropped.
struct PrivateCluster {
    ports: Vec<u16>,
    dir: PathBuf,
    servers: Vec<Child>,
}

impl PrivateCluster {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(unique_prefix("cluster").replace(':', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let ports = cluster_ports(3);
        let mut servers = Vec::new();
        for port in &ports {
            let port = port.to_string();
            let conf = dir.join(format!("nodes-{port}.conf"));
            let child = Command::new("redis-server")
                .args(["--port", &port, "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(&conf)
                .args(["--save", "", "--appendonly", "no"])
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run redis-server ({e}); {MISSING}"));
            servers.push(child);
        }
        let cluster = Self {
            ports,
            dir,
            servers,
        };
        for &port in &cluster.ports {
            eventually(Duration::from_secs(5), "redis-server up", || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            })
            .await;
        }
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); {MISSING}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for url in cluster.urls() {
            eventually(Duration::from_secs(10), "cluster_state:ok", || {
                let url = url.clone();
                async move {
                    let mut conn = raw_connection(&url).await;
                    let info: String = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    info.contains("cluster_state:ok")
                }
            })
            .await;
        }
        cluster
    }

    fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    fn config(&self, prefix: &str) -> RedisConfig {
        RedisConfig::new()
            .cluster(self.urls())
            .prefix(prefix)
            .ping_interval(Duration::from_millis(500))
    }

    async fn kill(&mut self, node: usize) {
        self.servers[node].kill().await.unwrap();
    }

    /// Keys each node holds.
    async fn dbsizes(&self) -> Vec<u64> {
        let mut sizes = Vec::new();
        for url in self.urls() {
            let mut conn = raw_connection(&url).await;
            sizes.push(redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap());
        }
        sizes
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `n` free ports whose cluster bus port (port + 10000) is free too.
fn cluster_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < n {
        let port = common::redis::free_port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if !ports.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            ports.push(port);
        }
    }
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_cache_spreads_keys_honours_ttls_and_broadcasts_invalidations() {
    let cluster = PrivateCluster::start().await;
    let prefix = unique_prefix("cluster");
    let a = match cluster.config(&prefix).connect().await {
        Ok(cache) => cache,
        Err(e) => panic!("the private cluster does not answer: {e}"),
    };
    assert!(a.is_cluster());

    // 200 keys: readable back, spread over the masters, then deleted.
    for i in 0..200 {
        a.set(
            &format!("k{i}"),
            i.to_string().into_bytes(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    }
    for i in 0..200 {
        assert_eq!(
            a.get(&format!("k{i}")).await.unwrap(),
            Some(i.to_string().into_bytes()),
            "k{i}"
        );
    }
    let sizes = cluster.dbsizes().await;
    assert_eq!(sizes.iter().sum::<u64>(), 200, "{sizes:?}");
    assert!(
        sizes.iter().filter(|&&n| n > 0).count() >= 2,
        "keys on one node only: {sizes:?}"
    );
    for i in 0..200 {
        a.delete(&format!("k{i}")).await.unwrap();
    }
    assert_eq!(cluster.dbsizes().await, vec![0, 0, 0]);
    assert_eq!(a.get("k7").await.unwrap(), None);

    // A real 300 ms TTL, set on the key's own master.
    a.set("short", b"x".to_vec(), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(a.get("short").await.unwrap(), Some(b"x".to_vec()));
    let mut pttls = Vec::new();
    for url in cluster.urls() {
        let mut conn = raw_connection(&url).await;
        let pttl: i64 = redis::cmd("PTTL")
            .arg(format!("{prefix}short"))
            .query_async(&mut conn)
            .await
            .unwrap_or(-2); // MOVED: not this node's slot
        pttls.push(pttl);
    }
    assert_eq!(
        pttls.iter().filter(|p| (1..=300).contains(*p)).count(),
        1,
        "PTTL per node: {pttls:?}"
    );
    let a2 = a.clone();
    eventually(Duration::from_secs(3), "expired", move || {
        let a = a2.clone();
        async move { a.get("short").await.unwrap().is_none() }
    })
    .await;

    // Invalidation: B (guarded, as the layer uses it) and A each hear the
    // other's, whichever master the key lives on.
    let b_cache: RedisCache = cluster.config(&prefix).connect().await.unwrap();
    subscribed(&a).await;
    subscribed(&b_cache).await;
    let b = GuardConfig::new()
        .name("cluster")
        .timeout(Duration::from_secs(1))
        .build(b_cache.clone())
        .unwrap();
    let mut on_a = a.invalidations().unwrap();
    let mut on_b = b.invalidations().unwrap();

    invalidation_is_heard(&a, &b, &mut on_b, "user:1").await;

    // Keys of every master: each one's PUBLISH reaches A's single
    // subscription on one seed.
    for i in 0..30 {
        b.invalidate(&format!("user:{i}")).await.unwrap();
    }
    for i in 0..30 {
        assert_eq!(next_key(&mut on_a).await, format!("user:{i}"));
    }
    // and B skipped its own 30.
    assert!(on_b.try_recv().is_err(), "B heard its own invalidations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_moves_to_another_seed_when_its_node_dies() {
    let mut cluster = PrivateCluster::start().await;
    let prefix = unique_prefix("cluster-seed");
    let cache = cluster
        .config(&prefix)
        .reconnect_max_delay(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    subscribed(&cache).await;
    assert_eq!(cache.subscriptions(), 1);
    let mut heard = cache.invalidations().unwrap();

    // The subscriber starts on the first seed; kill it.
    cluster.kill(0).await;
    let c = cache.clone();
    eventually(Duration::from_secs(5), "resubscribed", move || {
        let c = c.clone();
        async move { c.is_subscribed() && c.subscriptions() >= 2 }
    })
    .await;

    // A message published on a surviving node reaches it.
    let mut conn = raw_connection(&cluster.urls()[2]).await;
    let _: i64 = redis::cmd("PUBLISH")
        .arg(cache.channel())
        .arg("another-process\nuser:7")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(next_key(&mut heard).await, "user:7");
}

//! Real Redis for the tests: the shared server on loopback and private
//! `redis-server`s the tests start, kill and restart. A test that cannot
//! reach Redis fails and says how to start it.

use std::future::Future;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rampart_breaker::BreakerConfig;
use rampart_cache::remote::{GuardConfig, RedisCache, RedisConfig, RemoteCache};
use tokio::process::{Child, Command};
use tokio::sync::broadcast;
use tokio::time::{Instant, sleep, timeout};

pub const HOW_TO_START: &str = "start it with `scripts/services.sh` (or `eval \"$(scripts/services.sh)\"`), \
     or point RAMPART_REDIS_URL at a running server";

pub fn shared_url() -> String {
    std::env::var("RAMPART_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other test (or concurrent run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "rampart:test:{test}:{}.{nanos}.{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A cache on the shared Redis; panics, naming the script, if Redis is
/// not there.
pub async fn shared_cache(prefix: &str) -> RedisCache {
    let url = shared_url();
    match RedisConfig::new().url(&url).prefix(prefix).connect().await {
        Ok(cache) => cache,
        Err(e) => panic!("Redis is not reachable at {url}: {e}; {HOW_TO_START}"),
    }
}

/// A raw connection for writing as "another writer" would.
pub async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    match timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!("Redis is not reachable at {url}: {e}; {HOW_TO_START}"),
        Err(_) => panic!("Redis at {url} did not answer within 2 s; {HOW_TO_START}"),
    }
}

/// Polls `check` every 20 ms until it holds; panics after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        sleep(Duration::from_millis(20)).await;
    }
}

pub async fn subscribed(cache: &RedisCache) {
    let c = cache.clone();
    eventually(Duration::from_secs(3), "subscribed", move || {
        let c = c.clone();
        async move { c.is_subscribed() }
    })
    .await;
}

pub async fn next_key(rx: &mut broadcast::Receiver<String>) -> String {
    match timeout(Duration::from_secs(3), rx.recv()).await {
        Ok(Ok(key)) => key,
        Ok(Err(e)) => panic!("invalidation receiver failed: {e}"),
        Err(_) => panic!("no invalidation within 3 s"),
    }
}

/// `a` stores `key`, `b` reads it, `a` invalidates it: `b` hears the key
/// on `on_b` and no longer finds it.
pub async fn invalidation_is_heard(
    a: &impl RemoteCache,
    b: &impl RemoteCache,
    on_b: &mut broadcast::Receiver<String>,
    key: &str,
) {
    a.set(key, b"ada".to_vec(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(b.get(key).await.unwrap(), Some(b"ada".to_vec()));
    a.invalidate(key).await.unwrap();
    assert_eq!(next_key(on_b).await, key);
    assert_eq!(b.get(key).await.unwrap(), None, "invalidate deletes");
}

// === private servers ===

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A `redis-server` of our own on `port`, killed when dropped.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}); scripts/services.sh installs it")
            });
        let server = Self {
            port,
            child: Some(child),
        };
        eventually(
            Duration::from_secs(5),
            "private redis-server up",
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.unwrap();
    }
}

/// A Redis config for `server` and a guard that notice an outage fast:
/// short timeouts, a breaker that opens after two failures of four and
/// tries again after 300 ms.
pub fn quick_failover(server: &PrivateRedis, test: &str) -> (RedisConfig, GuardConfig) {
    let redis = RedisConfig::new()
        .url(server.url())
        .prefix(unique_prefix(test))
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .reconnect_retries(1)
        .reconnect_max_delay(Duration::from_millis(200))
        .ping_interval(Duration::from_millis(500));
    let guard = GuardConfig::new()
        .name(test)
        .timeout(Duration::from_millis(150))
        .breaker(
            BreakerConfig::new()
                .count_window(4)
                .minimum_calls(2)
                .failure_rate_threshold(0.5)
                .open_duration(Duration::from_millis(300))
                .half_open_max_calls(1),
        );
    (redis, guard)
}

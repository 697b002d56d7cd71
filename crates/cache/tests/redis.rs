//! The Redis tier against real Redis servers: the shared one on loopback
//! (`scripts/services.sh` makes sure it runs; `RAMPART_REDIS_URL`
//! overrides its address) and private `redis-server`s on spare ports that
//! the tests start, kill and restart themselves.
//!
//! A test that cannot reach Redis fails and says how to start it.

use std::future::Future;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rampart_breaker::BreakerConfig;
use rampart_cache::remote::{
    Codec, CodecError, ConnectError, GuardConfig, NodeConfig, RedisCache, RedisConfig, RemoteCache,
    RemoteErrorKind,
};
use tokio::process::{Child, Command};
use tokio::sync::broadcast;
use tokio::time::{Instant, sleep, timeout};

const HOW_TO_START: &str = "start it with `scripts/services.sh` (or `eval \"$(scripts/services.sh)\"`), \
     or point RAMPART_REDIS_URL at a running server";

fn shared_url() -> String {
    std::env::var("RAMPART_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other test (or concurrent run) uses.
fn unique_prefix(test: &str) -> String {
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
async fn shared_cache(prefix: &str) -> RedisCache {
    let url = shared_url();
    match RedisConfig::new().url(&url).prefix(prefix).connect().await {
        Ok(cache) => cache,
        Err(e) => panic!("Redis is not reachable at {url}: {e}; {HOW_TO_START}"),
    }
}

/// A raw connection for writing as "another writer" would.
async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
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
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
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

async fn subscribed(cache: &RedisCache) {
    let c = cache.clone();
    eventually(Duration::from_secs(3), "subscribed", move || {
        let c = c.clone();
        async move { c.is_subscribed() }
    })
    .await;
}

async fn next_key(rx: &mut broadcast::Receiver<String>) -> String {
    match timeout(Duration::from_secs(3), rx.recv()).await {
        Ok(Ok(key)) => key,
        Ok(Err(e)) => panic!("invalidation receiver failed: {e}"),
        Err(_) => panic!("no invalidation within 3 s"),
    }
}

#[tokio::test]
async fn set_get_delete_and_ttl_expiry() {
    let cache = shared_cache(&unique_prefix("basic")).await;
    assert_eq!(cache.get("k").await.unwrap(), None);
    cache
        .set("k", b"v1".to_vec(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(cache.get("k").await.unwrap(), Some(b"v1".to_vec()));
    cache.delete("k").await.unwrap();
    assert_eq!(cache.get("k").await.unwrap(), None);

    // Keys live under the prefix.
    let mut raw = raw_connection(&shared_url()).await;
    cache
        .set("k", b"v2".to_vec(), Duration::from_secs(30))
        .await
        .unwrap();
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("{}k", prefix_of(&cache)))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(stored, Some(b"v2".to_vec()));

    // A real 200 ms TTL: there at once, gone soon after.
    cache
        .set("short", b"x".to_vec(), Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(cache.get("short").await.unwrap(), Some(b"x".to_vec()));
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{}short", prefix_of(&cache)))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!((1..=200).contains(&pttl), "PTTL {pttl}");
    let c = cache.clone();
    eventually(Duration::from_secs(3), "expired", move || {
        let c = c.clone();
        async move { c.get("short").await.unwrap().is_none() }
    })
    .await;
    // the long-lived key is untouched
    assert_eq!(cache.get("k").await.unwrap(), Some(b"v2".to_vec()));
}

fn prefix_of(cache: &RedisCache) -> String {
    cache
        .channel()
        .strip_suffix("invalidate")
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn invalidation_reaches_the_other_instance_only() {
    let prefix = unique_prefix("inval");
    let a = shared_cache(&prefix).await;
    let b = shared_cache(&prefix).await;
    assert_ne!(a.instance_id(), b.instance_id());
    subscribed(&a).await;
    subscribed(&b).await;
    let mut on_a = a.invalidations().unwrap();
    let mut on_b = b.invalidations().unwrap();

    a.set("user:1", b"ada".to_vec(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(b.get("user:1").await.unwrap(), Some(b"ada".to_vec()));
    a.invalidate("user:1").await.unwrap();
    assert_eq!(next_key(&mut on_b).await, "user:1");
    assert_eq!(b.get("user:1").await.unwrap(), None, "invalidate deletes");

    // A skipped its own message: the first thing A hears is B's.
    b.invalidate("user:2").await.unwrap();
    assert_eq!(next_key(&mut on_a).await, "user:2");
    // and B skipped its own: its next is A's next.
    a.invalidate("user:3").await.unwrap();
    assert_eq!(next_key(&mut on_b).await, "user:3");

    // Another cache (another prefix) hears nothing of it.
    let other = shared_cache(&unique_prefix("inval-other")).await;
    subscribed(&other).await;
    let mut on_other = other.invalidations().unwrap();
    a.invalidate("user:4").await.unwrap();
    assert_eq!(next_key(&mut on_b).await, "user:4");
    assert!(matches!(
        on_other.try_recv(),
        Err(broadcast::error::TryRecvError::Empty)
    ));
}

#[tokio::test]
async fn bytes_from_another_writer_come_back_as_bytes_and_do_not_decode() {
    let cache = shared_cache(&unique_prefix("foreign")).await;
    let mut raw = raw_connection(&shared_url()).await;
    let key = format!("{}k", prefix_of(&cache));
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&b"\xff\x00not ours"[..])
        .query_async(&mut raw)
        .await
        .unwrap();
    let bytes = cache.get("k").await.unwrap().unwrap();
    assert_eq!(bytes, b"\xff\x00not ours");
    assert_eq!(
        Codec::new(1).decode::<String>(&bytes),
        Err(CodecError::NotOurs)
    );

    // An older schema written through the cache is refused by a newer reader.
    let v1 = Codec::new(1).encode(&("ada", 36u32)).unwrap();
    cache.set("k", v1, Duration::from_secs(30)).await.unwrap();
    let bytes = cache.get("k").await.unwrap().unwrap();
    assert!(matches!(
        Codec::new(2).decode::<(String, u32)>(&bytes),
        Err(CodecError::Schema {
            found: 1,
            expected: 2
        })
    ));
    assert_eq!(
        Codec::new(1).decode::<(String, u32)>(&bytes).unwrap(),
        ("ada".to_owned(), 36)
    );
}

#[tokio::test]
async fn connect_to_a_down_server_fails_in_bounded_time() {
    let port = free_port();
    let started = Instant::now();
    let err = timeout(
        Duration::from_secs(5),
        RedisConfig::new()
            .url(format!("redis://127.0.0.1:{port}"))
            .connect_timeout(Duration::from_millis(300))
            .connect(),
    )
    .await
    .expect("connect hung")
    .unwrap_err();
    assert!(
        matches!(&err, ConnectError::Unreachable { addr, .. } if *addr == format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

// === private servers ===

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A `redis-server` of our own on `port`, killed when dropped.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    async fn start(port: u16) -> Self {
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

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.unwrap();
    }
}

#[tokio::test]
async fn guarded_cache_degrades_when_redis_dies_and_recovers_when_it_returns() {
    let mut server = PrivateRedis::start(free_port()).await;
    let config = RedisConfig::new()
        .url(server.url())
        .prefix(unique_prefix("restart"))
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .reconnect_retries(1)
        .reconnect_max_delay(Duration::from_millis(200))
        .ping_interval(Duration::from_millis(500));
    let guard = GuardConfig::new()
        .name("restart")
        .timeout(Duration::from_millis(150))
        .breaker(
            BreakerConfig::new()
                .count_window(4)
                .minimum_calls(2)
                .failure_rate_threshold(0.5)
                .open_duration(Duration::from_millis(300))
                .half_open_max_calls(1),
        );
    let a = guard.build(config.connect().await.unwrap()).unwrap();
    let handle = a.handle();
    let b = config.connect().await.unwrap();
    subscribed(&b).await;
    let mut on_b = b.invalidations().unwrap();

    a.set("k", b"v".to_vec(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(a.get("k").await.unwrap(), Some(b"v".to_vec()));
    a.invalidate("k").await.unwrap();
    assert_eq!(next_key(&mut on_b).await, "k");

    // Down: calls fail (never hang), then the breaker answers at once.
    server.kill().await;
    let mut kinds = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !kinds.contains(&RemoteErrorKind::BreakerOpen) {
        assert!(Instant::now() < deadline, "breaker never opened: {kinds:?}");
        let result = timeout(Duration::from_secs(1), a.get("k"))
            .await
            .expect("a call hung while Redis was down");
        kinds.push(result.expect_err("Redis is down").kind());
    }
    assert!(
        matches!(
            kinds[0],
            RemoteErrorKind::Unavailable | RemoteErrorKind::Timeout
        ),
        "{kinds:?}"
    );
    assert!(handle.state().is_open());
    assert!(
        handle.errors(RemoteErrorKind::Unavailable) + handle.errors(RemoteErrorKind::Timeout) >= 2
    );
    assert_eq!(handle.errors(RemoteErrorKind::BreakerOpen), 1);
    eventually(Duration::from_secs(3), "subscriber noticed", || async {
        !b.is_subscribed()
    })
    .await;

    // Back on the same port: the guard recovers by itself.
    let _server = PrivateRedis::start(server.port).await;
    eventually(Duration::from_secs(6), "calls succeed again", || async {
        a.set("k", b"v2".to_vec(), Duration::from_secs(30))
            .await
            .is_ok()
    })
    .await;
    assert_eq!(a.get("k").await.unwrap(), Some(b"v2".to_vec()));
    assert!(!handle.state().is_open());

    // and B's subscriber has resubscribed: invalidations flow again.
    subscribed(&b).await;
    assert!(b.subscriptions() >= 2);
    a.invalidate("k").await.unwrap();
    assert_eq!(next_key(&mut on_b).await, "k");
}

#[tokio::test]
async fn sharded_store_routes_each_key_to_its_ring_node() {
    let private = PrivateRedis::start(free_port()).await;
    let shared = shared_url();
    // fail with the script's name if the shared server is not there
    let mut raw_shared = raw_connection(&shared).await;
    let mut raw_private = raw_connection(&private.url()).await;
    let prefix = unique_prefix("sharded");
    let config = RedisConfig::new()
        .prefix(&prefix)
        .virtual_nodes(100)
        .nodes([NodeConfig::new(&shared), NodeConfig::new(private.url())]);
    let a = config.build_sharded().unwrap();
    let b = config.build_sharded_guarded(&GuardConfig::new()).unwrap();
    let mut on_b = b.invalidations().unwrap();

    let keys: Vec<String> = (0..60).map(|i| format!("user:{i}")).collect();
    for k in &keys {
        a.set(k, k.as_bytes().to_vec(), Duration::from_secs(30))
            .await
            .unwrap();
    }
    let mut on_private = 0;
    for k in &keys {
        assert_eq!(b.get(k).await.unwrap(), Some(k.as_bytes().to_vec()));
        let node = a.ring().get_id(k).unwrap();
        let raw = if node.ends_with(&format!(":{}/0", private.port)) {
            on_private += 1;
            &mut raw_private
        } else {
            &mut raw_shared
        };
        let stored: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("{prefix}{k}"))
            .query_async(raw)
            .await
            .unwrap();
        assert_eq!(stored.as_deref(), Some(k.as_bytes()), "{k} not on {node}");
    }
    assert!(
        (10..=50).contains(&on_private),
        "{on_private} of 60 keys on one of two nodes"
    );

    // Invalidations of keys on either node reach the other instance.
    let first_on = |want_private: bool| {
        keys.iter()
            .find(|k| {
                a.ring()
                    .get_id(k)
                    .unwrap()
                    .ends_with(&format!(":{}/0", private.port))
                    == want_private
            })
            .unwrap()
            .clone()
    };
    let (k_private, k_shared) = (first_on(true), first_on(false));
    // wait until B's subscribers on both nodes are up
    for (_, _, node) in b.ring().nodes() {
        subscribed(node.get_ref()).await;
    }
    a.invalidate(&k_private).await.unwrap();
    a.invalidate(&k_shared).await.unwrap();
    let mut heard = vec![next_key(&mut on_b).await, next_key(&mut on_b).await];
    heard.sort();
    let mut want = vec![k_private.clone(), k_shared.clone()];
    want.sort();
    assert_eq!(heard, want);
    assert_eq!(b.get(&k_private).await.unwrap(), None);
    assert_eq!(b.get(&k_shared).await.unwrap(), None);
}

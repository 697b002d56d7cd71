//! [`RemoteCache`] over one Redis node, and the configuration shared with
//! [`ShardedRedis`](super::ShardedRedis).

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_core::Stream;
use rampart_core::ConfigError;
use rampart_core::error::validate;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use super::{BoxFuture, RemoteCache, RemoteError, RemoteErrorKind};

/// The first wait before the subscriber tries to resubscribe; it doubles
/// per failed attempt up to [`RedisConfig::reconnect_max_delay`].
const RESUBSCRIBE_MIN_DELAY: Duration = Duration::from_millis(50);
/// The first wait between reconnection attempts of the command connection.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(20);

/// How to reach Redis and how to name keys there; loads from TOML.
///
/// One table configures both a single node ([`RedisConfig::build`],
/// [`RedisConfig::connect`]: `url`) and several nodes behind a hash ring
/// ([`RedisConfig::build_sharded`]: `nodes`, `virtual_nodes`).
///
/// ```
/// use rampart_cache::remote::RedisConfig;
///
/// let cfg: RedisConfig = toml::from_str(r#"
///     url = "redis://127.0.0.1:6379/0"
///     prefix = "rampart:cache:users:"
///     connect_timeout = "1s"
///     response_timeout = "250ms"
///     reconnect_retries = 2
///     reconnect_max_delay = "1s"
///     ping_interval = "5s"
///     invalidation_capacity = 1024
/// "#).unwrap();
/// cfg.validate().unwrap();
///
/// let bad: RedisConfig = toml::from_str(r#"url = "http://example.com""#).unwrap();
/// assert_eq!(bad.validate().unwrap_err().field(), "redis.url");
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    pub(crate) url: String,
    pub(crate) nodes: Vec<NodeConfig>,
    pub(crate) virtual_nodes: u32,
    pub(crate) prefix: String,
    #[serde(with = "rampart_core::duration")]
    pub(crate) connect_timeout: Duration,
    #[serde(with = "rampart_core::duration")]
    pub(crate) response_timeout: Duration,
    pub(crate) reconnect_retries: u32,
    #[serde(with = "rampart_core::duration")]
    pub(crate) reconnect_max_delay: Duration,
    #[serde(with = "rampart_core::duration")]
    pub(crate) ping_interval: Duration,
    pub(crate) invalidation_capacity: usize,
}

/// One node of a sharded remote tier: its URL and its share of the keys
/// (a node of weight 2 gets about twice the keys of a node of weight 1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's URL, `redis://[user:password@]host[:port][/db]`.
    pub url: String,
    /// The node's share of the keys; at least 1. Defaults to 1.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

impl NodeConfig {
    /// A node at `url` of weight 1.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            weight: 1,
        }
    }

    /// The same node with weight `weight`.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            nodes: Vec::new(),
            virtual_nodes: 160,
            prefix: "rampart:cache:".to_owned(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_millis(500),
            reconnect_retries: 2,
            reconnect_max_delay: Duration::from_secs(1),
            ping_interval: Duration::from_secs(10),
            invalidation_capacity: 1024,
        }
    }
}

impl RedisConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The node of [`build`](Self::build) and [`connect`](Self::connect).
    /// Defaults to `redis://127.0.0.1:6379`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// The nodes of [`build_sharded`](Self::build_sharded). Defaults to
    /// none.
    pub fn nodes(mut self, nodes: impl IntoIterator<Item = NodeConfig>) -> Self {
        self.nodes = nodes.into_iter().collect();
        self
    }

    /// Points on the hash ring per unit of a node's weight. More points
    /// spread keys more evenly (see [`HashRing`](super::HashRing)) and cost
    /// memory (16 bytes each) and a longer binary search. Defaults to 160.
    pub fn virtual_nodes(mut self, n: u32) -> Self {
        self.virtual_nodes = n;
        self
    }

    /// Put before every key in Redis, and before `invalidate` for the
    /// invalidation channel; use one per cache, such as
    /// `rampart:cache:users:`. Defaults to `rampart:cache:`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest a connection attempt may take, and the bound of
    /// [`connect`](Self::connect) as a whole. Defaults to 1 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// The longest Redis may take to answer one command. Defaults to
    /// 500 ms. (Wrap the store in a [`GuardedRemote`](super::GuardedRemote)
    /// for a shorter per-call bound and a breaker.)
    pub fn response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d;
        self
    }

    /// How many times a lost command connection is re-dialled (with
    /// exponential backoff) before calls fail; the next call starts a new
    /// round. Defaults to 2.
    pub fn reconnect_retries(mut self, n: u32) -> Self {
        self.reconnect_retries = n;
        self
    }

    /// The longest wait between two reconnection (and resubscription)
    /// attempts. Defaults to 1 s.
    pub fn reconnect_max_delay(mut self, d: Duration) -> Self {
        self.reconnect_max_delay = d;
        self
    }

    /// How often the invalidation subscriber pings Redis, so that a
    /// connection that died silently is noticed and replaced. Defaults to
    /// 10 s.
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d;
        self
    }

    /// How many invalidations a slow receiver of
    /// [`invalidations`](RemoteCache::invalidations) may fall behind
    /// before it lags (and should drop its whole local tier). Defaults to
    /// 1024.
    pub fn invalidation_capacity(mut self, n: usize) -> Self {
        self.invalidation_capacity = n;
        self
    }

    /// Checks every setting; the error names the field at fault
    /// (`redis.url`, `redis.nodes`, `redis.prefix`, ...).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_common()?;
        parse_url("redis.url", &self.url)?;
        for node in &self.nodes {
            parse_url("redis.nodes", &node.url)?;
            validate::non_zero("redis.nodes.weight", node.weight)?;
        }
        Ok(())
    }

    pub(crate) fn validate_common(&self) -> Result<(), ConfigError> {
        if self.prefix.is_empty() {
            return Err(ConfigError::new(
                "redis.prefix",
                "must not be empty (it keeps the cache's keys apart from other data)",
            ));
        }
        validate::non_zero_duration("redis.connect_timeout", self.connect_timeout)?;
        validate::non_zero_duration("redis.response_timeout", self.response_timeout)?;
        validate::non_zero_duration("redis.reconnect_max_delay", self.reconnect_max_delay)?;
        validate::non_zero_duration("redis.ping_interval", self.ping_interval)?;
        validate::non_zero("redis.virtual_nodes", self.virtual_nodes)?;
        validate::non_zero(
            "redis.invalidation_capacity",
            self.invalidation_capacity as u64,
        )?;
        Ok(())
    }

    /// A [`RedisCache`] on [`url`](Self::url), connecting lazily: nothing
    /// is dialled here, the first call connects (and a down server makes
    /// that call fail after [`connect_timeout`](Self::connect_timeout)),
    /// and the invalidation subscriber starts in the background.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, like `tokio::spawn`: it spawns the
    /// subscriber task.
    pub fn build(&self) -> Result<RedisCache, ConfigError> {
        self.validate_common()?;
        let client = parse_url("redis.url", &self.url)?;
        let (tx, _) = broadcast::channel(self.invalidation_capacity);
        Ok(RedisCache::from_parts(self, client, instance_id(), tx))
    }

    /// [`build`](Self::build), then a `PING`: a server that is down or
    /// does not answer within [`connect_timeout`](Self::connect_timeout)
    /// is an error here instead of at the first call.
    pub async fn connect(&self) -> Result<RedisCache, ConnectError> {
        let cache = self.build().map_err(ConnectError::Config)?;
        match tokio::time::timeout(self.connect_timeout, cache.ping()).await {
            Ok(Ok(())) => Ok(cache),
            Ok(Err(source)) => Err(ConnectError::Unreachable {
                addr: cache.addr().to_owned(),
                source,
            }),
            Err(_) => Err(ConnectError::Unreachable {
                addr: cache.addr().to_owned(),
                source: RemoteError::new(RemoteErrorKind::Timeout, None),
            }),
        }
    }

    pub(crate) fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(self.reconnect_retries as usize)
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(self.reconnect_max_delay)
    }
}

/// Parses a node URL; the error names `field` and never repeats the URL
/// (it may carry a password).
pub(crate) fn parse_url(field: &'static str, url: &str) -> Result<redis::Client, ConfigError> {
    redis::Client::open(url).map_err(|e| {
        ConfigError::new(
            field,
            format!("not a usable Redis URL (redis://host[:port][/db]): {e}"),
        )
    })
}

/// A unique id for one cache instance, so that its subscriber can skip the
/// invalidations it published itself.
pub(crate) fn instance_id() -> Arc<str> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
    Arc::from(format!("{:x}.{nanos:x}.{n:x}", std::process::id()))
}

/// [`RedisConfig::connect`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// A setting was refused; it names the field.
    Config(ConfigError),
    /// The server did not answer `PING` in time.
    Unreachable {
        /// The server's `host:port` (never the password).
        addr: String,
        /// What went wrong.
        source: RemoteError,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => e.fmt(f),
            Self::Unreachable { addr, source } => write!(f, "redis at {addr}: {source}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Unreachable { source, .. } => Some(source),
        }
    }
}

/// A [`RemoteCache`] on one Redis node.
///
/// - `get`/`set`/`delete` are `GET`, `SET key value PX ttl` and `DEL` on
///   `{prefix}{key}`, over one multiplexed connection that reconnects by
///   itself ([`redis::aio::ConnectionManager`]). A TTL is rounded up to
///   whole milliseconds (at least 1 ms).
/// - `invalidate` is `DEL` and `PUBLISH {prefix}invalidate "{id}\n{key}"`
///   in one round trip, where `id` is this instance's id.
/// - A background task holds a pub/sub connection subscribed to that
///   channel and feeds [`invalidations`](RemoteCache::invalidations) with
///   the keys other instances invalidated (its own are skipped). When the
///   connection drops, or a periodic `PING` goes unanswered, it
///   resubscribes with exponential backoff (50 ms doubling up to
///   [`RedisConfig::reconnect_max_delay`]); invalidations published while
///   it was away are lost, so a near cache should keep its TTLs short.
///   The task ends when the last clone is dropped.
///
/// Clones share the connection and the subscriber.
///
/// ```no_run
/// // Needs a Redis server on loopback (scripts/services.sh starts one).
/// use std::time::Duration;
/// use rampart_cache::remote::{RedisConfig, RemoteCache};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = RedisConfig::new()
///     .url("redis://127.0.0.1:6379")
///     .prefix("rampart:cache:users:")
///     .connect()
///     .await?;
/// let mut dropped = cache.invalidations().unwrap();
/// cache.set("42", b"ada".to_vec(), Duration::from_secs(60)).await?;
/// assert_eq!(cache.get("42").await?, Some(b"ada".to_vec()));
/// cache.invalidate("42").await?; // other processes drop "42"
/// # let _ = dropped.try_recv();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    addr: String,
    prefix: String,
    channel: String,
    id: Arc<str>,
    invalidations: broadcast::Sender<String>,
    subscriber: Arc<SubscriberState>,
    task: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct SubscriberState {
    subscribed: AtomicBool,
    subscriptions: AtomicU64,
}

impl RedisCache {
    /// A cache on `client` whose subscriber publishes to `tx` and skips
    /// messages signed `id` (shared by the nodes of a sharded tier).
    pub(crate) fn from_parts(
        config: &RedisConfig,
        client: redis::Client,
        id: Arc<str>,
        tx: broadcast::Sender<String>,
    ) -> Self {
        let addr = client.get_connection_info().addr().to_string();
        let channel = format!("{}invalidate", config.prefix);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.manager_config())
            .expect("a ConnectionManager without a push sender is always accepted");
        let subscriber = Arc::new(SubscriberState::default());
        let task = tokio::spawn(subscribe_loop(Subscriber {
            client,
            channel: channel.clone(),
            id: Arc::clone(&id),
            tx: tx.clone(),
            state: Arc::clone(&subscriber),
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            max_delay: config.reconnect_max_delay,
            ping_interval: config.ping_interval,
        }))
        .abort_handle();
        Self {
            inner: Arc::new(Inner {
                conn,
                addr,
                prefix: config.prefix.clone(),
                channel,
                id,
                invalidations: tx,
                subscriber,
                task,
            }),
        }
    }

    /// The server's `host:port`.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// This instance's id, which signs the invalidations it publishes.
    pub fn instance_id(&self) -> &str {
        &self.inner.id
    }

    /// The pub/sub channel invalidations travel on: `{prefix}invalidate`.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Whether the invalidation subscriber is subscribed right now.
    pub fn is_subscribed(&self) -> bool {
        self.inner.subscriber.subscribed.load(Ordering::Acquire)
    }

    /// How many times the subscriber has subscribed (1 after start-up, one
    /// more per resubscription after a lost connection).
    pub fn subscriptions(&self) -> u64 {
        self.inner.subscriber.subscriptions.load(Ordering::Acquire)
    }

    /// Sends `PING`.
    pub async fn ping(&self) -> Result<(), RemoteError> {
        let mut conn = self.inner.conn.clone();
        redis::cmd("PING")
            .exec_async(&mut conn)
            .await
            .map_err(remote_error)
    }

    fn key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.inner.prefix.len() + key.len());
        k.push_str(&self.inner.prefix);
        k.push_str(key);
        k
    }
}

impl RemoteCache for RedisCache {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            redis::cmd("GET")
                .arg(self.key(key))
                .query_async(&mut conn)
                .await
                .map_err(remote_error)
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            redis::cmd("SET")
                .arg(self.key(key))
                .arg(value)
                .arg("PX")
                .arg(ttl_millis(ttl))
                .exec_async(&mut conn)
                .await
                .map_err(remote_error)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            redis::cmd("DEL")
                .arg(self.key(key))
                .exec_async(&mut conn)
                .await
                .map_err(remote_error)
        })
    }

    fn invalidate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            let message = format!("{}\n{key}", self.inner.id);
            redis::pipe()
                .cmd("DEL")
                .arg(self.key(key))
                .ignore()
                .cmd("PUBLISH")
                .arg(&self.inner.channel)
                .arg(message)
                .ignore()
                .exec_async(&mut conn)
                .await
                .map_err(remote_error)
        })
    }

    fn invalidations(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.inner.invalidations.subscribe())
    }
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("addr", &self.inner.addr)
            .field("prefix", &self.inner.prefix)
            .field("instance_id", &self.inner.id)
            .field("subscribed", &self.is_subscribed())
            .finish()
    }
}

/// A TTL in whole milliseconds, rounded up, at least 1 (`PX 0` is an
/// error in Redis).
fn ttl_millis(ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

/// Sorts a Redis error into the kinds the layer counts.
pub(crate) fn remote_error(e: redis::RedisError) -> RemoteError {
    let kind = if e.is_timeout() {
        RemoteErrorKind::Timeout
    } else if e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
    {
        RemoteErrorKind::Unavailable
    } else {
        RemoteErrorKind::Store
    };
    RemoteError::new(kind, Some(Box::new(e)))
}

// === the invalidation subscriber ===

struct Subscriber {
    client: redis::Client,
    channel: String,
    id: Arc<str>,
    tx: broadcast::Sender<String>,
    state: Arc<SubscriberState>,
    connect_timeout: Duration,
    response_timeout: Duration,
    max_delay: Duration,
    ping_interval: Duration,
}

/// Subscribes, forwards messages until the connection is lost, waits,
/// subscribes again; until aborted.
async fn subscribe_loop(s: Subscriber) {
    let mut delay = RESUBSCRIBE_MIN_DELAY;
    // Log a failure once per outage, not once per attempt.
    let mut failing = false;
    loop {
        match tokio::time::timeout(s.connect_timeout, subscribe(&s.client, &s.channel)).await {
            Ok(Ok((sink, stream))) => {
                s.state.subscribed.store(true, Ordering::Release);
                s.state.subscriptions.fetch_add(1, Ordering::AcqRel);
                if failing {
                    tracing::info!(channel = %s.channel, "redis invalidation subscriber resubscribed");
                }
                failing = false;
                delay = RESUBSCRIBE_MIN_DELAY;
                listen(&s, sink, stream).await;
                s.state.subscribed.store(false, Ordering::Release);
                tracing::warn!(channel = %s.channel, "redis invalidation subscription lost; resubscribing");
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(channel = %s.channel, error = %e, "redis invalidation subscriber cannot subscribe; retrying with backoff");
            }
            Err(_) if !failing => {
                failing = true;
                tracing::warn!(channel = %s.channel, "redis invalidation subscriber timed out connecting; retrying with backoff");
            }
            _ => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(s.max_delay);
    }
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
    let (mut sink, stream) = client.get_async_pubsub().await?.split();
    sink.subscribe(channel).await?;
    Ok((sink, stream))
}

/// Forwards other instances' invalidations until the connection ends or a
/// ping goes unanswered.
async fn listen(s: &Subscriber, mut sink: PubSubSink, mut stream: PubSubStream) {
    let mut ping = tokio::time::interval(s.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)) => {
                let Some(msg) = msg else { return };
                if let Some(key) = foreign_key(msg.get_payload_bytes(), &s.id) {
                    // No receiver is not an error: nobody listens yet.
                    let _ = s.tx.send(key.to_owned());
                }
            }
            _ = ping.tick() => {
                let pong = tokio::time::timeout(s.response_timeout, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

/// The key of an invalidation message `"{id}\n{key}"`, unless it is ours
/// or not valid UTF-8.
fn foreign_key<'m>(payload: &'m [u8], own_id: &str) -> Option<&'m str> {
    let text = std::str::from_utf8(payload).ok()?;
    let (id, key) = text.split_once('\n')?;
    (id != own_id).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_a_millisecond() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_millis(Duration::from_secs(3)), 3000);
        assert_eq!(ttl_millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn own_and_malformed_messages_are_skipped() {
        assert_eq!(foreign_key(b"b1\nusers:42", "a1"), Some("users:42"));
        assert_eq!(foreign_key(b"a1\nusers:42", "a1"), None);
        assert_eq!(foreign_key(b"no newline", "a1"), None);
        assert_eq!(foreign_key(b"b1\n\xff", "a1"), None);
        // a key may itself hold newlines: only the first one splits
        assert_eq!(foreign_key(b"b1\nx\ny", "a1"), Some("x\ny"));
    }

    #[test]
    fn instance_ids_differ() {
        assert_ne!(instance_id(), instance_id());
    }

    #[test]
    fn bad_settings_name_their_field() {
        let field = |c: RedisConfig| c.validate().unwrap_err().field();
        assert_eq!(field(RedisConfig::new().url("http://x")), "redis.url");
        assert_eq!(field(RedisConfig::new().url("not a url")), "redis.url");
        assert_eq!(field(RedisConfig::new().prefix("")), "redis.prefix");
        assert_eq!(
            field(RedisConfig::new().connect_timeout(Duration::ZERO)),
            "redis.connect_timeout"
        );
        assert_eq!(
            field(RedisConfig::new().response_timeout(Duration::ZERO)),
            "redis.response_timeout"
        );
        assert_eq!(
            field(RedisConfig::new().ping_interval(Duration::ZERO)),
            "redis.ping_interval"
        );
        assert_eq!(
            field(RedisConfig::new().reconnect_max_delay(Duration::ZERO)),
            "redis.reconnect_max_delay"
        );
        assert_eq!(
            field(RedisConfig::new().virtual_nodes(0)),
            "redis.virtual_nodes"
        );
        assert_eq!(
            field(RedisConfig::new().invalidation_capacity(0)),
            "redis.invalidation_capacity"
        );
        assert_eq!(
            field(
                RedisConfig::new()
                    .nodes([NodeConfig::new("redis://a"), NodeConfig::new("ftp://b")])
            ),
            "redis.nodes"
        );
        assert_eq!(
            field(RedisConfig::new().nodes([NodeConfig::new("redis://a").weight(0)])),
            "redis.nodes.weight"
        );
        // the password never appears in the message
        let err = RedisConfig::new()
            .url("redis://user:s3cret@host:notaport")
            .validate()
            .unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn loads_from_toml_and_refuses_unknown_keys() {
        let cfg: RedisConfig = toml::from_str(
            r#"
            prefix = "p:"
            virtual_nodes = 100
            nodes = [{ url = "redis://a:1" }, { url = "redis://b:2", weight = 3 }]
            "#,
        )
        .unwrap();
        assert_eq!(cfg.prefix, "p:");
        assert_eq!(cfg.nodes[1], NodeConfig::new("redis://b:2").weight(3));
        assert_eq!(cfg.nodes[0].weight, 1);
        assert!(toml::from_str::<RedisConfig>("urls = []").is_err());
    }

    #[tokio::test]
    async fn build_refuses_a_bad_url() {
        let err = RedisConfig::new()
            .url("redis://:1:2:3")
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "redis.url");
        let err = RedisConfig::new()
            .url("mongodb://x")
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Config(e) if e.field() == "redis.url"));
    }
}

//! The remote tier: a cache shared by many processes (Redis), behind one
//! trait so that the layer does not care which store it talks to.
//!
//! The layer serialises values with [`Codec`] and hands the store bytes;
//! a store error is never the caller's error: the layer counts it and
//! treats the entry as a miss.
//!
//! # Stores
//!
//! | type | what |
//! |---|---|
//! | [`RedisCache`] | one Redis node: `GET`, `SET … PX`, `DEL` on `{prefix}{key}` over one multiplexed connection that reconnects by itself; `invalidate` = `DEL` + `PUBLISH {prefix}invalidate` |
//! | [`RedisCache`] in cluster mode | a Redis Cluster ([`RedisConfig::cluster`]: seed URLs): the same commands, each sent by the client to the master owning the key's slot (`MOVED`/`ASK` followed, slot map refreshed by itself) |
//! | [`ShardedRedis`] | several nodes; each key goes to the node a [`HashRing`] (XXH3, virtual nodes, weights) picks, so adding a node moves about `1/(n+1)` of the keys |
//! | [`GuardedRemote`] | any store behind a short per-call timeout and a circuit breaker (`rampart-breaker`): while it is open calls fail at once with [`RemoteErrorKind::BreakerOpen`]; it closes again by itself after a successful trial call |
//!
//! All are configured by [`RedisConfig`] (one TOML table: `url`,
//! `cluster` or `nodes`, `prefix`, timeouts) and [`GuardConfig`] (`timeout`, a
//! `[breaker]` table). Bad settings are refused with a
//! [`ConfigError`](rampart_core::ConfigError) naming the field
//! (`redis.url`, `redis.cluster`, `redis.nodes`, `remote.timeout`, ...).
//!
//! # Connecting
//!
//! [`RedisConfig::build`] connects lazily: it returns at once and the
//! first call dials (a down server fails that call after
//! `connect_timeout`). [`RedisConfig::connect`] also sends a `PING` and
//! fails with [`ConnectError::Unreachable`] if the server does not answer
//! within `connect_timeout`: it never hangs. Both must run inside a Tokio
//! runtime (they spawn the invalidation subscriber).
//!
//! # Near-cache coherence
//!
//! Every instance has an id. `invalidate(key)` deletes the key and
//! publishes `"{id}\n{key}"` on `{prefix}invalidate`; each instance's
//! background subscriber forwards the keys published by *other*
//! instances to its [`invalidations`](RemoteCache::invalidations)
//! receivers, where the layer drops its local copy. The subscriber
//! notices a lost connection (end of stream, or an unanswered `PING`
//! every `ping_interval`) and resubscribes with exponential backoff
//! (50 ms doubling up to `reconnect_max_delay`). Messages published while
//! it was disconnected are lost (Redis pub/sub is at-most-once), so keep
//! the local tier's TTL short enough to bound staleness after an outage,
//! and treat a `Lagged` receiver error as "drop everything".
//! With [`ShardedRedis`] the message goes through the key's own node; every
//! instance subscribes to every node.
//!
//! # Redis Cluster
//!
//! Set [`RedisConfig::cluster`] to a few seed nodes (any masters or
//! replicas of the cluster; one reachable seed is enough) instead of `url`
//! or `nodes`; combining them is refused (`redis.cluster`). The client
//! ([`ClusterConnection`](::redis::cluster_async::ClusterConnection)) learns the slot map,
//! sends each key's command to its master and follows resharding by
//! itself; `connect_timeout`, `response_timeout` and `reconnect_retries`
//! apply to every node. A cluster forwards every `PUBLISH` to all its
//! nodes, so coherence works as on one node: `invalidate` deletes the key
//! on its master and publishes the same `"{id}\n{key}"` message, and the
//! subscriber holds one pub/sub connection to one seed, moving to the next
//! seed whenever it loses it.
//!
//! ```no_run
//! // Needs a Redis Cluster; tests/redis_cluster.rs starts a private one.
//! use std::time::Duration;
//! use rampart_cache::remote::{GuardConfig, RedisConfig, RemoteCache};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = RedisConfig::new()
//!     .cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000", "redis://10.0.0.3:7000"])
//!     .prefix("rampart:cache:users:")
//!     .connect()
//!     .await?;
//! assert!(cluster.is_cluster());
//! let remote = GuardConfig::new().name("users").build(cluster)?;
//! remote.set("42", b"ada".to_vec(), Duration::from_secs(300)).await?;
//! remote.invalidate("42").await?; // heard by every process, whichever seed it listens on
//! # Ok(()) }
//! ```
//!
//! # Degradation
//!
//! Wrap the store in [`GuardedRemote`] (or use
//! [`RedisConfig::build_sharded_guarded`] for one breaker per node).
//! Timeouts and unreachable-store errors count as failures; an error
//! answer from Redis (`Store`) does not trip the breaker. Errors by kind
//! are on [`GuardHandle`] and in `rampart_cache_remote_errors_total{name,
//! reason}`.
//!
//! ```no_run
//! // Needs Redis on loopback: `scripts/services.sh` starts it.
//! use std::time::Duration;
//! use rampart_cache::remote::{Codec, GuardConfig, RedisConfig, RemoteCache};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let redis = RedisConfig::new()
//!     .url("redis://127.0.0.1:6379")
//!     .prefix("rampart:cache:users:")
//!     .connect()
//!     .await?;
//! let remote = GuardConfig::new()
//!     .name("users")
//!     .timeout(Duration::from_millis(50))
//!     .build(redis)?;
//! let codec = Codec::new(1);
//!
//! remote.set("42", codec.encode(&("ada", 36u32))?, Duration::from_secs(300)).await?;
//! let bytes = remote.get("42").await?.unwrap();
//! let (name, age): (String, u32) = codec.decode(&bytes)?;
//! assert_eq!((name.as_str(), age), ("ada", 36));
//!
//! // Elsewhere, every other process hears the key and drops its copy.
//! let mut dropped = remote.invalidations().unwrap();
//! remote.invalidate("42").await?;
//! # let _ = dropped.try_recv();
//! # Ok(()) }
//! ```
//!
//! The examples that talk to Redis are marked `no_run` (doc tests run
//! without services); `tests/redis.rs` runs the same calls against a real
//! server, including killing and restarting one, and
//! `tests/redis_cluster.rs` against a private three-master cluster.

use std::fmt;
use std::time::Duration;

mod codec;
mod guard;
mod redis;
mod ring;

pub use self::guard::{GuardConfig, GuardHandle, GuardedRemote};
pub use self::redis::{ConnectError, NodeConfig, RedisCache, RedisConfig};
pub use self::ring::{HashRing, ShardedRedis};
pub use codec::{Codec, CodecError, FORMAT_VERSION};

pub use rampart_core::BoxFuture;

/// A store shared by many processes: get, set with a time to live,
/// delete, and invalidate (delete, and tell every other process to drop
/// its local copy).
pub trait RemoteCache: Send + Sync + 'static {
    /// The bytes stored under `key`, or `None` when there are none.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>>;

    /// Stores `value` under `key` for `ttl`.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RemoteError>>;

    /// Removes `key` from the store only.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>>;

    /// Removes `key` from the store and broadcasts its invalidation, so
    /// that every process subscribed through
    /// [`invalidations`](Self::invalidations) drops its local copy.
    fn invalidate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>>;

    /// Keys that other processes invalidated, as they arrive; `None` when
    /// the store broadcasts nothing. Each call gives a new receiver.
    fn invalidations(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }
}

/// Why a remote call failed. The layer never returns it to a caller: it
/// counts it and serves the local tier and the upstream instead.
#[derive(Debug)]
pub struct RemoteError {
    kind: RemoteErrorKind,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// The kind of a [`RemoteError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// The store could not be reached (connection refused or lost).
    Unavailable,
    /// The call took longer than its timeout.
    Timeout,
    /// The store's breaker is open: the call was not made.
    BreakerOpen,
    /// The store answered with an error.
    Store,
}

impl RemoteError {
    /// An error of `kind`, caused by `source` when there is one.
    pub fn new(
        kind: RemoteErrorKind,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self { kind, source }
    }

    /// What went wrong.
    pub fn kind(&self) -> RemoteErrorKind {
        self.kind
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            RemoteErrorKind::Unavailable => "remote cache unavailable",
            RemoteErrorKind::Timeout => "remote cache call timed out",
            RemoteErrorKind::BreakerOpen => "remote cache breaker open",
            RemoteErrorKind::Store => "remote cache store error",
        };
        match &self.source {
            Some(source) => write!(f, "{what}: {source}"),
            None => f.write_str(what),
        }
    }
}

impl std::error::Error for RemoteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

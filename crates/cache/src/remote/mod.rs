//! The remote tier: a cache shared by many processes (Redis), behind one
//! trait so that the layer does not care which store it talks to.
//!
//! The layer serialises values with [`Codec`] and hands the store bytes;
//! a store error is never the caller's error: the layer counts it and
//! treats the entry as a miss.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

mod codec;
mod guard;
mod redis;
mod ring;

pub use self::guard::{GuardConfig, GuardHandle, GuardedRemote};
pub use self::redis::{ConnectError, NodeConfig, RedisCache, RedisConfig};
pub use self::ring::{HashRing, ShardedRedis};
pub use codec::{Codec, CodecError, FORMAT_VERSION};

/// A boxed, sendable future: what [`RemoteCache`]'s methods return, so the
/// trait can be used as `Arc<dyn RemoteCache>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

//! The remote tier as the local tier uses it: read on a local miss, filled
//! after a load, invalidated through the handle, and listened to for other
//! processes' invalidations. Every remote failure is a miss, counted and
//! logged at most once per interval, never the caller's error.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast::error::RecvError;

use crate::remote::{Codec, CodecError, RemoteCache, RemoteError};
use crate::shared::{Shared, UserFn};

type Encode<V> = fn(&Codec, &V) -> Result<Vec<u8>, CodecError>;
type Decode<V> = fn(&Codec, &[u8]) -> Result<V, CodecError>;

/// A remote store, how keys are named in it, and how values are encoded.
pub(crate) struct RemoteTier<K, V> {
    store: Arc<dyn RemoteCache>,
    codec: Codec,
    to_key: UserFn<K, String>,
    from_key: UserFn<str, Option<K>>,
    encode: Encode<V>,
    decode: Decode<V>,
    listening: AtomicBool,
}

impl<K, V: Serialize + DeserializeOwned> RemoteTier<K, V> {
    pub(crate) fn new(
        store: Arc<dyn RemoteCache>,
        codec: Codec,
        to_key: impl Fn(&K) -> String + Send + Sync + 'static,
        from_key: impl Fn(&str) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        Self {
            store,
            codec,
            to_key: Box::new(to_key),
            from_key: Box::new(from_key),
            encode: |codec, value| codec.encode(value),
            decode: |codec, bytes| codec.decode(bytes),
            listening: AtomicBool::new(false),
        }
    }
}

impl<Req, Resp, K, V> Shared<Req, Resp, K, V>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// The remote tier's value for `key`, or `None` on a miss, an error or
    /// bytes that do not decode.
    pub(crate) async fn remote_get(&self, remote: &RemoteTier<K, V>, key: &K) -> Option<V> {
        let name = (remote.to_key)(key);
        match remote.store.get(&name).await {
            Ok(Some(bytes)) => match (remote.decode)(&remote.codec, &bytes) {
                Ok(value) => {
                    self.stats.remote_hits.add();
                    Some(value)
                }
                Err(e) => {
                    self.stats.remote_decode_errors.add();
                    self.log_remote("get", &name, &e);
                    None
                }
            },
            Ok(None) => {
                self.stats.remote_misses.add();
                None
            }
            Err(e) => {
                self.stats.remote_errors.add();
                self.log_remote("get", &name, &e);
                None
            }
        }
    }

    /// Stores `value` remotely for `ttl`, in the background: the caller
    /// does not wait for the remote write.
    pub(crate) fn remote_set(
        self: &Arc<Self>,
        remote: &RemoteTier<K, V>,
        key: &K,
        value: &V,
        ttl: Duration,
    ) {
        let name = (remote.to_key)(key);
        let bytes = match (remote.encode)(&remote.codec, value) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.stats.remote_errors.add();
                self.log_remote("encode", &name, &e);
                return;
            }
        };
        let shared = Arc::clone(self);
        let store = Arc::clone(&remote.store);
        tokio::spawn(async move {
            if let Err(e) = store.set(&name, bytes, ttl).await {
                shared.stats.remote_errors.add();
                shared.log_remote("set", &name, &e);
            }
        });
    }

    /// Drops `key` locally and, with a remote tier, remotely and in every
    /// process listening to the store's invalidations.
    pub(crate) async fn invalidate(&self, key: &K) -> Result<(), RemoteError> {
        self.local.invalidate(key).await;
        self.stats.invalidations.add();
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let name = (remote.to_key)(key);
        remote.store.invalidate(&name).await.inspect_err(|e| {
            self.stats.remote_errors.add();
            self.log_remote("invalidate", &name, e);
        })
    }

    /// Starts, once, the task that drops local copies of keys other
    /// processes invalidated. It ends when the store's broadcast closes or
    /// the cache is dropped.
    pub(crate) fn start_listener(self: &Arc<Self>) {
        let Some(remote) = &self.remote else { return };
        if remote.listening.load(Ordering::Relaxed) || remote.listening.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Some(mut rx) = remote.store.invalidations() else {
            return;
        };
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let received = rx.recv().await;
                let Some(shared) = weak.upgrade() else { break };
                match received {
                    Ok(name) => shared.drop_local(&name).await,
                    Err(RecvError::Lagged(lost)) => {
                        // Some invalidations were lost: drop everything
                        // rather than serve what another process changed.
                        tracing::warn!(name = %shared.name, lost, "cache missed remote invalidations, dropping the local tier");
                        shared.local.invalidate_all();
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
    }

    async fn drop_local(&self, name: &str) {
        let Some(remote) = &self.remote else { return };
        if let Some(key) = (remote.from_key)(name) {
            self.local.invalidate(&key).await;
            self.stats.invalidations.add();
        }
    }

    fn log_remote(&self, op: &'static str, key: &str, error: &dyn std::error::Error) {
        if self.log.allow(self.origin.nanos()) {
            tracing::warn!(name = %self.name, op, key, %error, "remote cache failed; served as a miss (further failures counted, not logged, for a while)");
        }
    }
}

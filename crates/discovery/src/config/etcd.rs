//! [`EtcdConfigStore`]: the config store on etcd v3.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::state::{Filter, check_key};
use super::{
    BoxFuture, Change, ChangeKind, ConfigStore, ConfigStoreError, Conflict, StoreOptions,
    Versioned, WatchStream,
};
use crate::etcd::{Backoff, CallError, KeyEvent, Resume, Sink, list, timed};

/// The settings of an [`EtcdConfigStore`].
///
/// Deserializes from TOML with every field optional, durations as `"5s"`
/// (an integer is milliseconds) and unknown keys refused:
///
/// ```
/// use rampart_discovery::config::EtcdConfigStoreConfig;
///
/// let config: EtcdConfigStoreConfig = toml::from_str(r#"
///     endpoints = ["http://10.0.0.1:2379"]
///     prefix = "/shop/config"
///     history_depth = 8
/// "#).unwrap();
/// assert_eq!(config, EtcdConfigStoreConfig::new()
///     .endpoints(["http://10.0.0.1:2379"])
///     .prefix("/shop/config")
///     .history_depth(8));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfigStoreConfig {
    endpoints: Vec<String>,
    prefix: String,
    name: String,
    history_depth: usize,
    #[serde(with = "rampart_core::duration")]
    connect_timeout: Duration,
    #[serde(with = "rampart_core::duration")]
    request_timeout: Duration,
    #[serde(with = "rampart_core::duration")]
    backoff_min: Duration,
    #[serde(with = "rampart_core::duration")]
    backoff_max: Duration,
}

impl Default for EtcdConfigStoreConfig {
    fn default() -> Self {
        let (endpoints, connect_timeout, request_timeout, backoff_min, backoff_max) =
            crate::etcd::default_connection();
        Self {
            endpoints,
            prefix: "/rampart/config".to_owned(),
            name: String::new(),
            history_depth: StoreOptions::default().history_depth,
            connect_timeout,
            request_timeout,
            backoff_min,
            backoff_max,
        }
    }
}

impl EtcdConfigStoreConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key prefix every config key is stored under (trailing `/`
    /// ignored): key `k` is `{prefix}/k` in etcd. Defaults to
    /// `"/rampart/config"`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The store's name, on its tracing events. Defaults to `""`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How many values [`history`](ConfigStore::history) lists at most
    /// (at least 1). Defaults to 16.
    pub fn history_depth(mut self, depth: usize) -> Self {
        self.history_depth = depth;
        self
    }

    crate::etcd::connection_setters!();

    /// Checks the settings, naming the first field at fault: no endpoint
    /// or one that is not an `http(s)://` URL, an empty `prefix`, a zero
    /// `history_depth`, timeout or `backoff_min`, or `backoff_max` below
    /// `backoff_min`.
    pub fn validate(&self) -> Result<(), ConfigStoreError> {
        self.connection().validate()?;
        crate::etcd::normalize_prefix(&self.prefix)?;
        StoreOptions::default()
            .history_depth(self.history_depth)
            .validate()?;
        Ok(())
    }

    /// Validates the settings and makes the store. The connection is made
    /// lazily: an etcd that is down now is not an error (calls fail with
    /// [`ConfigStoreError::Backend`] until it is up).
    pub async fn build(self) -> Result<EtcdConfigStore, ConfigStoreError> {
        self.validate()?;
        let client = self.connection().connect().await?;
        let prefix = format!("{}/", crate::etcd::normalize_prefix(&self.prefix)?);
        let (shutdown, _) = watch::channel(());
        Ok(EtcdConfigStore {
            inner: Arc::new(Inner {
                client,
                prefix,
                config: self,
                shutdown,
            }),
        })
    }
}

/// A [`ConfigStore`] on etcd v3: key `k` is the etcd key `{prefix}/k`, its
/// value the raw bytes.
///
/// - Versions are etcd revisions: a key's version is its `mod_revision`,
///   and [`put`](ConfigStore::put) returns the revision of the write.
/// - [`compare_and_put`](ConfigStore::compare_and_put) is one etcd
///   transaction comparing the key's `mod_revision` (0 for a key that does
///   not exist); on a conflict the same transaction reads the current
///   version, which [`Conflict::current`] carries.
/// - [`history`](ConfigStore::history) reads the key at earlier revisions
///   (each value's `mod_revision - 1`, back to the key's creation), newest
///   [`history_depth`](EtcdConfigStoreConfig::history_depth) values,
///   oldest first. etcd keeps old revisions only until it is *compacted*
///   (`--auto-compaction-*`, or an explicit compaction): values older than
///   the compaction revision are gone, so the history silently stops at
///   it, and a [`rollback`](ConfigStore::rollback) to such a version is
///   [`ConfigStoreError::VersionNotFound`]. The history of a key ends at
///   its last creation: a deleted key lists no history (etcd does not say
///   when it was deleted), though a rollback to any version etcd still
///   holds works, deleted or not.
/// - [`rollback`](ConfigStore::rollback) reads the key at `version` and
///   writes that content again (a new version).
/// - [`watch`](ConfigStore::watch) is an etcd prefix watch;
///   [`watch_pattern`](ConfigStore::watch_pattern) watches every key of
///   the store and filters by the regex (compiled once) in this process.
///   Both start at the revision read when called, and across disconnects
///   resume from the last revision seen + 1 (reconnecting with backoff),
///   so no change is missed or repeated. If etcd compacted that revision
///   away meanwhile, the watch re-reads the keys and delivers the
///   difference (writes at their own versions, deletions at the read's
///   revision), then watches on.
///
/// When etcd is unreachable every call fails with
/// [`ConfigStoreError::Backend`] and nothing is written; watches keep
/// their place and catch up when it is back. Typed watches
/// ([`watch_typed`](super::watch_typed)) keep their last good value
/// meanwhile. Gray release works unchanged (its keys are ordinary keys).
///
/// Clones share the client; when the last is dropped, every watch ends.
#[derive(Debug, Clone)]
pub struct EtcdConfigStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// With the trailing `/`.
    prefix: String,
    config: EtcdConfigStoreConfig,
    shutdown: watch::Sender<()>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("prefix", &self.prefix)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EtcdConfigStore {
    /// The settings it was built with.
    pub fn config(&self) -> &EtcdConfigStoreConfig {
        &self.inner.config
    }

    /// The etcd client it uses.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The etcd key of config key `key`.
    pub fn etcd_key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    fn timeout(&self) -> Duration {
        self.inner.config.request_timeout
    }

    fn checked_key(&self, key: &str) -> Result<String, ConfigStoreError> {
        check_key(key)?;
        Ok(self.etcd_key(key))
    }

    /// The key's value at `revision` (the latest with `None`).
    async fn read(
        &self,
        key: &str,
        revision: Option<i64>,
    ) -> Result<Option<etcd_client::KeyValue>, CallError> {
        let options = revision.map(|r| GetOptions::new().with_revision(r));
        let mut kv = self.inner.client.kv_client();
        let mut got = timed(self.timeout(), kv.get(key, options)).await?;
        Ok(got.take_kvs().into_iter().next())
    }

    async fn get_now(&self, key: &str) -> Result<Option<Versioned>, ConfigStoreError> {
        let key = self.checked_key(key)?;
        Ok(self.read(&key, None).await.map_err(backend)?.map(versioned))
    }

    async fn put_now(&self, key: &str, value: Bytes) -> Result<u64, ConfigStoreError> {
        let etcd_key = self.checked_key(key)?;
        let mut kv = self.inner.client.kv_client();
        let put = timed(self.timeout(), kv.put(etcd_key, value.to_vec(), None))
            .await
            .map_err(backend)?;
        let version = header_revision(put.header());
        tracing::debug!(store = %self.inner.config.name, key, version, "put");
        Ok(version)
    }

    async fn compare_and_put_now(
        &self,
        key: &str,
        value: Bytes,
        expected: u64,
    ) -> Result<u64, ConfigStoreError> {
        let etcd_key = self.checked_key(key)?;
        let expected_rev = i64::try_from(expected).unwrap_or(i64::MAX);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                etcd_key.as_str(),
                CompareOp::Equal,
                expected_rev,
            )])
            .and_then([TxnOp::put(etcd_key.as_str(), value.to_vec(), None)])
            .or_else([TxnOp::get(etcd_key.as_str(), None)]);
        let mut kv = self.inner.client.kv_client();
        let done = timed(self.timeout(), kv.txn(txn)).await.map_err(backend)?;
        if done.succeeded() {
            return Ok(header_revision(done.header()));
        }
        let current = done.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(got) => Some(got.kvs().first().map(|kv| rev_u64(kv.mod_revision()))),
            _ => None,
        });
        Err(Conflict {
            key: key.to_owned(),
            expected,
            current: current.flatten(),
        }
        .into())
    }

    async fn delete_now(&self, key: &str) -> Result<Option<u64>, ConfigStoreError> {
        let etcd_key = self.checked_key(key)?;
        let mut kv = self.inner.client.kv_client();
        let deleted = timed(self.timeout(), kv.delete(etcd_key, None))
            .await
            .map_err(backend)?;
        Ok((deleted.deleted() > 0).then(|| header_revision(deleted.header())))
    }

    async fn history_now(&self, key: &str) -> Result<Vec<Versioned>, ConfigStoreError> {
        let etcd_key = self.checked_key(key)?;
        let mut history = Vec::new();
        let mut next = self.read(&etcd_key, None).await.map_err(backend)?;
        while let Some(kv) = next.take() {
            let before = kv.mod_revision() - 1;
            history.push(versioned(kv));
            if history.len() >= self.inner.config.history_depth || before < 1 {
                break;
            }
            next = match self.read(&etcd_key, Some(before)).await {
                Ok(kv) => kv,
                Err(e) if is_compacted(&e) => None,
                Err(e) => return Err(backend(e)),
            };
        }
        history.reverse();
        Ok(history)
    }

    async fn rollback_now(&self, key: &str, version: u64) -> Result<u64, ConfigStoreError> {
        let etcd_key = self.checked_key(key)?;
        let not_found = || ConfigStoreError::VersionNotFound {
            key: key.to_owned(),
            version,
        };
        let revision = i64::try_from(version).map_err(|_| not_found())?;
        let old = match self.read(&etcd_key, Some(revision)).await {
            Ok(Some(kv)) if kv.mod_revision() == revision => kv,
            Ok(_) => return Err(not_found()),
            Err(e) if is_compacted(&e) || is_future(&e) => return Err(not_found()),
            Err(e) => return Err(backend(e)),
        };
        let written = self.put_now(key, Bytes::from(old.value().to_vec())).await?;
        tracing::info!(store = %self.inner.config.name, key, version, written, "rolled back");
        Ok(written)
    }

    async fn watch_filtered(
        &self,
        etcd_prefix: String,
        filter: Filter,
    ) -> Result<WatchStream, ConfigStoreError> {
        let snapshot = list(&self.inner.client, etcd_prefix.as_bytes(), self.timeout())
            .await
            .map_err(backend)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = ChangeSink {
            tx,
            strip: self.inner.prefix.len(),
            filter,
        };
        let resume = Resume::from_snapshot(
            self.inner.client.clone(),
            etcd_prefix.into_bytes(),
            snapshot,
            Backoff::new(self.inner.config.backoff_min, self.inner.config.backoff_max),
            self.timeout(),
            self.inner.config.name.clone(),
            self.inner.shutdown.subscribe(),
        );
        tokio::spawn(resume.run(sink));
        Ok(WatchStream::new(rx))
    }
}

/// Turns key events into config changes, with the store prefix taken off
/// and the watch's filter applied.
struct ChangeSink {
    tx: mpsc::UnboundedSender<Change>,
    strip: usize,
    filter: Filter,
}

impl Sink for ChangeSink {
    fn send(&mut self, event: KeyEvent) -> bool {
        let key = String::from_utf8_lossy(event.key.get(self.strip..).unwrap_or_default());
        if !self.filter.matches(&key) {
            return !self.tx.is_closed();
        }
        let kind = match event.value {
            Some(_) => ChangeKind::Put,
            None => ChangeKind::Delete,
        };
        self.tx
            .send(Change {
                key: key.into_owned(),
                version: rev_u64(event.revision),
                kind,
                value: event.value.map(Bytes::from),
            })
            .is_ok()
    }

    fn closed(&self) -> impl Future<Output = ()> + Send + '_ {
        self.tx.closed()
    }
}

fn versioned(kv: etcd_client::KeyValue) -> Versioned {
    let version = rev_u64(kv.mod_revision());
    let (_, value) = kv.into_key_value();
    Versioned {
        value: Bytes::from(value),
        version,
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> u64 {
    header.map_or(0, |h| rev_u64(h.revision()))
}

fn rev_u64(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

fn backend(e: CallError) -> ConfigStoreError {
    ConfigStoreError::Backend(Box::new(e))
}

/// etcd answered that the revision read was compacted away.
fn is_compacted(e: &CallError) -> bool {
    e.to_string().contains("compacted")
}

/// etcd answered that the revision read is in the future.
fn is_future(e: &CallError) -> bool {
    e.to_string().contains("future revision")
}

impl ConfigStore for EtcdConfigStore {
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Versioned>, ConfigStoreError>> {
        Box::pin(self.get_now(key))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
    ) -> BoxFuture<'a, Result<u64, ConfigStoreError>> {
        Box::pin(self.put_now(key, value))
    }

    fn compare_and_put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        expected_version: u64,
    ) -> BoxFuture<'a, Result<u64, ConfigStoreError>> {
        Box::pin(self.compare_and_put_now(key, value, expected_version))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, ConfigStoreError>> {
        Box::pin(self.delete_now(key))
    }

    fn history<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Versioned>, ConfigStoreError>> {
        Box::pin(self.history_now(key))
    }

    fn rollback<'a>(
        &'a self,
        key: &'a str,
        version: u64,
    ) -> BoxFuture<'a, Result<u64, ConfigStoreError>> {
        Box::pin(self.rollback_now(key, version))
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<WatchStream, ConfigStoreError>> {
        let etcd_prefix = self.etcd_key(prefix);
        let filter = Filter::Prefix(prefix.to_owned());
        Box::pin(self.watch_filtered(etcd_prefix, filter))
    }

    fn watch_pattern<'a>(
        &'a self,
        pattern: &'a str,
    ) -> BoxFuture<'a, Result<WatchStream, ConfigStoreError>> {
        Box::pin(async move {
            let filter = Filter::pattern(pattern)?;
            self.watch_filtered(self.inner.prefix.clone(), filter).await
        })
    }
}

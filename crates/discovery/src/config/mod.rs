//! The config center: versioned keys, compare-and-set, history and
//! rollback, watches by prefix or regex, and typed values.
//!
//! A [`ConfigStore`] holds byte values under string keys. Every write gets
//! a new *revision* from one store-wide counter that only grows (as in
//! etcd), so a key's version says when it last changed, the history of a key
//! is ordered by it, and a watcher sees changes in that order.
//!
//! - [`ConfigStore::get`], [`put`](ConfigStore::put) (returns the new
//!   version), [`compare_and_put`](ConfigStore::compare_and_put) (fails with
//!   [`ConfigStoreError::Conflict`] carrying the current version; expected
//!   version `0` means "must not exist"), [`delete`](ConfigStore::delete);
//! - [`history`](ConfigStore::history): the last
//!   [`history_depth`](StoreOptions::history_depth) values of a key, oldest
//!   first; [`rollback`](ConfigStore::rollback) writes an old value again as
//!   a *new* version;
//! - [`watch`](ConfigStore::watch) (keys under a prefix) and
//!   [`watch_pattern`](ConfigStore::watch_pattern) (keys matching a regex,
//!   compiled once; an invalid pattern is
//!   [`ConfigStoreError::InvalidPattern`]): a [`WatchStream`] of every
//!   [`Change`] made after the call, each exactly once, in version order.
//!
//! Backends: [`MemoryConfigStore`] (embedded, the default),
//! [`FileConfigStore`] (one JSON file rewritten atomically on every write,
//! reopened with its history), and `EtcdConfigStore` (feature `etcd`:
//! versions are etcd revisions). All are usable as `Arc<dyn ConfigStore>`.
//!
//! [`watch_typed`] turns a key into a `tokio::sync::watch::Receiver<Arc<T>>`:
//! each new value is decoded (JSON or TOML, see [`Format`]); a value that
//! does not decode is reported on an error channel and the last good value
//! stays live, so a bad push never takes a service down.
//!
//! Gray release: [`put_gray`] stores a value for the instances a
//! [`Selector`] matches (by instance id, or by labels) beside the main value,
//! under the reserved key [`gray_key`] (`__gray__/KEY`), so it works on every
//! backend. [`get_for`] and [`watch_typed_for`] give an [`InstanceInfo`] the
//! gray value while its selector matches, the main value otherwise;
//! [`promote_gray`] makes the gray value the main one, [`clear_gray`]
//! abandons it.
//!
//! ```
//! use std::sync::Arc;
//! use rampart_discovery::config::{
//!     watch_typed, ConfigStore, ConfigStoreError, Format, MemoryConfigStore,
//! };
//!
//! #[derive(serde::Deserialize, Debug, PartialEq)]
//! struct Limits { max_conns: u32 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Arc<dyn ConfigStore> = Arc::new(MemoryConfigStore::new());
//! let v1 = store.put("svc/limits", r#"{"max_conns": 10}"#.into()).await?;
//!
//! // Compare-and-set: a writer that read an old version is refused.
//! let v2 = store.compare_and_put("svc/limits", r#"{"max_conns": 20}"#.into(), v1).await?;
//! match store.compare_and_put("svc/limits", "{}".into(), v1).await {
//!     Err(ConfigStoreError::Conflict(c)) => assert_eq!(c.current, Some(v2)),
//!     other => panic!("expected a conflict, got {other:?}"),
//! }
//!
//! // A typed view that a layer can reconfigure from.
//! let mut typed = watch_typed::<Limits>(store.clone(), "svc/limits", Format::Json).await?;
//! assert_eq!(typed.current().max_conns, 20);
//!
//! // A bad push is rejected; the last good value stays live.
//! store.put("svc/limits", "not json".into()).await?;
//! let rejected = typed.errors.recv().await.unwrap();
//! assert_eq!(rejected.key, "svc/limits");
//! assert_eq!(typed.current().max_conns, 20);
//!
//! // Rollback writes the old content as a new version, and watchers see it.
//! let v4 = store.rollback("svc/limits", v1).await?;
//! typed.values.changed().await?;
//! assert_eq!(typed.current().max_conns, 10);
//! assert_eq!(store.get("svc/limits").await?.unwrap().version, v4);
//!
//! // Gray release: canaries get a new value first.
//! use rampart_discovery::config::{get_for, put_gray, InstanceInfo, Selector};
//! let canary = InstanceInfo::new("api-1").label("canary", "true");
//! let selector = Selector::default().label("canary", "true");
//! put_gray(store.as_ref(), "svc/limits", r#"{"max_conns": 50}"#.into(), selector).await?;
//! let seen = get_for(store.as_ref(), "svc/limits", &canary).await?.unwrap();
//! assert_eq!(seen.as_str(), Some(r#"{"max_conns": 50}"#));
//! let others = get_for(store.as_ref(), "svc/limits", &InstanceInfo::new("api-2")).await?;
//! assert_eq!(others.unwrap().version, v4);
//! # Ok(())
//! # }
//! ```

mod error;
#[cfg(feature = "etcd")]
mod etcd;
mod file;
mod gray;
mod memory;
mod state;
mod typed;
mod types;

pub use error::{ConfigStoreError, Conflict};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdConfigStore, EtcdConfigStoreConfig};
pub use file::FileConfigStore;
pub use gray::{
    GRAY_PREFIX, Gray, InstanceInfo, Selector, clear_gray, get_for, get_gray, gray_key,
    promote_gray, put_gray,
};
pub use memory::MemoryConfigStore;
pub use typed::{
    ERROR_BUFFER, Format, TypedError, TypedErrorKind, TypedWatch, watch_typed, watch_typed_for,
};
pub use types::{BoxFuture, Change, ChangeKind, StoreOptions, Versioned, WatchStream};

use bytes::Bytes;

/// A versioned key-value store for configuration.
///
/// Object safe: share one as `Arc<dyn ConfigStore>`. Versions come from one
/// store-wide revision counter that only grows; the version of a key is the
/// revision of its last write.
pub trait ConfigStore: Send + Sync + std::fmt::Debug {
    /// The current value of `key` and its version, or `None` if it does not
    /// exist (never written, or deleted).
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Versioned>, ConfigStoreError>>;

    /// Writes `value` under `key` and returns its new version.
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
    ) -> BoxFuture<'a, Result<u64, ConfigStoreError>>;

    /// Writes `value` only if the current version of `key` is
    /// `expected_version` (`0`: only if `key` does not exist), and returns
    /// the new version. Otherwise fails with [`ConfigStoreError::Conflict`]
    /// carrying the current version.
    fn compare_and_put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        expected_version: u64,
    ) -> BoxFuture<'a, Result<u64, ConfigStoreError>>;

    /// Deletes `key`. Returns the revision of the deletion, or `None` if the
    /// key did not exist (then nothing changes and no watcher is told). The
    /// key's history is kept, so a deleted key can be rolled back.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, ConfigStoreError>>;

    /// The values `key` has had, oldest first, at most
    /// [`StoreOptions::history_depth`] of them (the newest ones).
    fn history<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Versioned>, ConfigStoreError>>;

    /// Writes the value `key` had at `version` again, as a new version
    /// (which it returns). Fails with [`ConfigStoreError::VersionNotFound`]
    /// if that version is not in the key's history.
    fn rollback<'a>(
        &'a self,
        key: &'a str,
        version: u64,
    ) -> BoxFuture<'a, Result<u64, ConfigStoreError>>;

    /// Every change, after this call, to a key that starts with `prefix`
    /// (`""` watches every key).
    fn watch<'a>(&'a self, prefix: &'a str)
    -> BoxFuture<'a, Result<WatchStream, ConfigStoreError>>;

    /// Every change, after this call, to a key that the regular expression
    /// `pattern` matches (anywhere in the key, unless anchored with `^`/`$`).
    /// The pattern is compiled once; an invalid one fails with
    /// [`ConfigStoreError::InvalidPattern`].
    fn watch_pattern<'a>(
        &'a self,
        pattern: &'a str,
    ) -> BoxFuture<'a, Result<WatchStream, ConfigStoreError>>;
}

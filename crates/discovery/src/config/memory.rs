//! The embedded, in-process config store.

use bytes::Bytes;

use super::state::{Locked, Op};
use super::{BoxFuture, ConfigStore, ConfigStoreError, StoreOptions, Versioned, WatchStream};

/// A [`ConfigStore`] in process memory: the embedded default.
///
/// Every operation takes one short lock and never awaits while holding it;
/// a write and the notification of its watchers happen under the same lock,
/// so watchers see every change exactly once and in version order even with
/// concurrent writers.
#[derive(Debug, Default)]
pub struct MemoryConfigStore {
    state: Locked,
    options: StoreOptions,
}

impl MemoryConfigStore {
    /// An empty store with the default [`StoreOptions`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with `options`, refused if they are invalid.
    pub fn with_options(options: StoreOptions) -> Result<Self, ConfigStoreError> {
        Ok(Self {
            state: Locked::default(),
            options: options.validate()?,
        })
    }

    fn apply(&self, key: &str, op: Op) -> Result<Option<u64>, ConfigStoreError> {
        let mut inner = self.state.lock();
        let change = inner.data.apply(key, op, self.options.history_depth)?;
        Ok(change.map(|change| {
            inner.watchers.notify(&change);
            change.version
        }))
    }
}

impl ConfigStore for MemoryConfigStore {
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Versioned>, ConfigStoreError>> {
        Box::pin(async move { Ok(self.state.get(key)) })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
    ) -> BoxFuture<'a, Result<u64, ConfigStoreError>> {
        Box::pin(async move { written(self.apply(key, Op::Put(value))) })
    }

    fn compare_and_put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        expected_version: u64,
    ) -> BoxFuture<'a, Result<u64, ConfigStoreError>> {
        let op = Op::CompareAndPut {
            value,
            expected: expected_version,
        };
        Box::pin(async move { written(self.apply(key, op)) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, ConfigStoreError>> {
        Box::pin(async move { self.apply(key, Op::Delete) })
    }

    fn history<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Versioned>, ConfigStoreError>> {
        Box::pin(async move { Ok(self.state.history(key)) })
    }

    fn rollback<'a>(
        &'a self,
        key: &'a str,
        version: u64,
    ) -> BoxFuture<'a, Result<u64, ConfigStoreError>> {
        Box::pin(async move { written(self.apply(key, Op::Rollback(version))) })
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<WatchStream, ConfigStoreError>> {
        Box::pin(async move { Ok(self.state.watch(prefix)) })
    }

    fn watch_pattern<'a>(
        &'a self,
        pattern: &'a str,
    ) -> BoxFuture<'a, Result<WatchStream, ConfigStoreError>> {
        Box::pin(async move { self.state.watch_pattern(pattern) })
    }
}

/// The version a put, compare-and-put or rollback wrote: these always
/// change the key, so `apply` returns `Some`.
pub(crate) fn written(
    result: Result<Option<u64>, ConfigStoreError>,
) -> Result<u64, ConfigStoreError> {
    result.map(Option::unwrap_or_default)
}

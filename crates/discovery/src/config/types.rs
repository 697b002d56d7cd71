//! Values, changes, watch streams and store options.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use rampart_core::ConfigError;
use serde::Deserialize;
use tokio::sync::mpsc;

pub use rampart_core::BoxFuture;

/// A value and the version (store revision) at which it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The value's bytes.
    pub value: Bytes,
    /// The store revision of the write that set this value.
    pub version: u64,
}

impl Versioned {
    /// The value as UTF-8 text, or `None` if it is not valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// What a change did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The key was written (created, updated or rolled back).
    Put,
    /// The key was deleted.
    Delete,
}

/// One change to one key, as a watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key that changed.
    pub key: String,
    /// The store revision of the change.
    pub version: u64,
    /// A write or a deletion.
    pub kind: ChangeKind,
    /// The new value for [`ChangeKind::Put`]; `None` for a deletion.
    pub value: Option<Bytes>,
}

/// The changes a watch matches, in version order, each exactly once.
///
/// Read it with [`next`](Self::next) or as a
/// [`futures_core::Stream`]. It ends when the store is dropped. Changes are
/// buffered without bound until read, so that none is lost: a watcher that
/// stops reading should drop its stream.
#[derive(Debug)]
pub struct WatchStream {
    rx: mpsc::UnboundedReceiver<Change>,
}

impl WatchStream {
    /// A stream fed by `rx`; for [`ConfigStore`](super::ConfigStore)
    /// backends.
    pub fn new(rx: mpsc::UnboundedReceiver<Change>) -> Self {
        Self { rx }
    }

    /// The next change, or `None` once the store is gone.
    pub async fn next(&mut self) -> Option<Change> {
        self.rx.recv().await
    }

    /// The next change if one is already waiting.
    pub fn try_next(&mut self) -> Option<Change> {
        self.rx.try_recv().ok()
    }
}

impl futures_core::Stream for WatchStream {
    type Item = Change;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change>> {
        self.rx.poll_recv(cx)
    }
}

/// Options shared by the config store backends.
///
/// Loads from TOML (`history_depth = 32`); unknown fields are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreOptions {
    /// How many values each key's history keeps, the current one included
    /// (default 16, at least 1). Older values are dropped and can no longer
    /// be rolled back to.
    pub history_depth: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { history_depth: 16 }
    }
}

impl StoreOptions {
    /// Sets [`history_depth`](Self::history_depth).
    pub fn history_depth(mut self, depth: usize) -> Self {
        self.history_depth = depth;
        self
    }

    /// Checks the options (a backend's constructor calls this).
    pub fn validate(self) -> Result<Self, ConfigError> {
        if self.history_depth == 0 {
            return Err(ConfigError::new(
                "history_depth",
                "must be at least 1, got 0",
            ));
        }
        Ok(self)
    }
}

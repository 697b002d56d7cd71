//! Typed config: a key decoded into a `watch::Receiver<Arc<T>>`.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

use super::{ChangeKind, ConfigStore, ConfigStoreError};

/// How a typed value is encoded in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// JSON (`serde_json`).
    #[default]
    Json,
    /// TOML (`toml`): the value is a TOML document (a table).
    Toml,
}

impl Format {
    /// Decodes `bytes` as a `T`.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Format::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Format::Toml => {
                let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
                toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
            }
        }
    }
}

/// Why a change to a typed key was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypedErrorKind {
    /// The new value does not decode; the explanation.
    Decode(String),
    /// The key was deleted.
    Deleted,
}

/// A change to a typed key that was rejected: the last good value stays
/// live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedError {
    /// The key.
    pub key: String,
    /// The version of the rejected change.
    pub version: u64,
    /// Why it was rejected.
    pub kind: TypedErrorKind,
}

/// How many rejections [`TypedWatch::errors`] buffers; beyond that they are
/// only logged.
pub const ERROR_BUFFER: usize = 64;

/// A typed view of one key: see [`watch_typed`].
#[derive(Debug)]
pub struct TypedWatch<T> {
    /// The last value that decoded, replaced by each new one that does.
    pub values: watch::Receiver<Arc<T>>,
    /// Rejected changes (values that do not decode, deletions), up to
    /// [`ERROR_BUFFER`] unread; each is also logged with `tracing::warn!`.
    pub errors: mpsc::Receiver<TypedError>,
}

impl<T> TypedWatch<T> {
    /// The live value.
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.values.borrow())
    }
}

/// Watches `key` in `store`, decoding each value as a `T` in `format`.
///
/// The key must exist and its value must decode, or this fails with
/// [`ConfigStoreError::NotFound`] or [`ConfigStoreError::Decode`]. After
/// that, each new value that decodes replaces the live one; one that does
/// not, or a deletion, is reported on [`TypedWatch::errors`] (and logged)
/// and the last good value stays live. No change between the first read and
/// the watch is missed. A spawned task follows the key until every clone of
/// [`TypedWatch::values`] is dropped.
pub async fn watch_typed<T>(
    store: Arc<dyn ConfigStore>,
    key: &str,
    format: Format,
) -> Result<TypedWatch<T>, ConfigStoreError>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    // Watch first, then read: a change in between arrives on the stream and
    // is recognised as newer by its version.
    let mut changes = store
        .watch_pattern(&format!("^{}$", regex::escape(key)))
        .await?;
    let first = store
        .get(key)
        .await?
        .ok_or_else(|| ConfigStoreError::NotFound {
            key: key.to_owned(),
        })?;
    let value: T = format
        .decode(&first.value)
        .map_err(|reason| ConfigStoreError::Decode {
            key: key.to_owned(),
            version: first.version,
            reason,
        })?;
    let (values_tx, values) = watch::channel(Arc::new(value));
    let (errors_tx, errors) = mpsc::channel(ERROR_BUFFER);
    let seen = first.version;
    tokio::spawn(async move {
        loop {
            let change = tokio::select! {
                () = values_tx.closed() => break,
                change = changes.next() => match change {
                    Some(change) => change,
                    None => break,
                },
            };
            if change.version <= seen {
                continue;
            }
            let kind = match (change.kind, change.value.as_deref()) {
                (ChangeKind::Put, Some(bytes)) => match format.decode::<T>(bytes) {
                    Ok(value) => {
                        values_tx.send_replace(Arc::new(value));
                        continue;
                    }
                    Err(reason) => TypedErrorKind::Decode(reason),
                },
                _ => TypedErrorKind::Deleted,
            };
            tracing::warn!(
                key = %change.key,
                version = change.version,
                error = ?kind,
                "config change rejected; the last good value stays live"
            );
            let _ = errors_tx.try_send(TypedError {
                key: change.key,
                version: change.version,
                kind,
            });
        }
    });
    Ok(TypedWatch { values, errors })
}

//! Typed config: a key decoded into a `watch::Receiver<Arc<T>>`.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

use super::gray::{Gray, InstanceInfo, get_gray, gray_key};
use super::{Change, ChangeKind, ConfigStore, ConfigStoreError, Versioned};

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
///
/// This follows the main value only; see [`watch_typed_for`] for the value
/// a given instance should use during a gray release.
pub async fn watch_typed<T>(
    store: Arc<dyn ConfigStore>,
    key: &str,
    format: Format,
) -> Result<TypedWatch<T>, ConfigStoreError>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    watch_inner(store, key, format, None).await
}

/// Like [`watch_typed`], for one instance: while `key` has a gray value
/// whose [`Selector`](super::Selector) matches `instance`, that value is
/// live; otherwise the main value is (see [`put_gray`](super::put_gray)).
/// A change of the gray value that does not concern `instance` does not
/// wake its receivers.
pub async fn watch_typed_for<T>(
    store: Arc<dyn ConfigStore>,
    key: &str,
    format: Format,
    instance: InstanceInfo,
) -> Result<TypedWatch<T>, ConfigStoreError>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    watch_inner(store, key, format, Some(instance)).await
}

/// What the watching task knows of the main and gray values.
struct View {
    key: String,
    instance: Option<InstanceInfo>,
    main: Option<Versioned>,
    gray: Option<Gray>,
}

impl View {
    /// Applies a change to the main or the gray key; a gray record that
    /// does not decode is an error and counts as no gray value.
    fn apply(&mut self, change: &Change) -> Result<(), String> {
        let value = change
            .value
            .clone()
            .filter(|_| change.kind == ChangeKind::Put);
        if change.key == self.key {
            self.main = value.map(|value| Versioned {
                value,
                version: change.version,
            });
            return Ok(());
        }
        self.gray = None;
        if let Some(stored) = value {
            self.gray = Some(Gray::decode(&stored, change.version)?);
        }
        Ok(())
    }

    /// The value the watched instance should use.
    fn effective(&self) -> Option<Versioned> {
        if let (Some(gray), Some(instance)) = (&self.gray, &self.instance)
            && gray.selector.matches(instance)
        {
            return Some(Versioned {
                value: gray.value.clone(),
                version: gray.version,
            });
        }
        self.main.clone()
    }
}

async fn watch_inner<T>(
    store: Arc<dyn ConfigStore>,
    key: &str,
    format: Format,
    instance: Option<InstanceInfo>,
) -> Result<TypedWatch<T>, ConfigStoreError>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    let gray_key = instance.as_ref().map(|_| gray_key(key));
    let with_gray = gray_key.is_some();
    // Watch first, then read: a change in between arrives on the stream and
    // is recognised as already seen by its version.
    let pattern = match &gray_key {
        Some(gray) => format!("^(?:{}|{})$", regex::escape(key), regex::escape(gray)),
        None => format!("^{}$", regex::escape(key)),
    };
    let mut changes = store.watch_pattern(&pattern).await?;
    let main = store.get(key).await?;
    let gray = if with_gray {
        get_gray(store.as_ref(), key).await?
    } else {
        None
    };
    let seen_main = main.as_ref().map_or(0, |v| v.version);
    let seen_gray = gray.as_ref().map_or(0, |g| g.version);
    let mut view = View {
        key: key.to_owned(),
        instance,
        main,
        gray,
    };
    let first = view.effective().ok_or_else(|| ConfigStoreError::NotFound {
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
    // The version last decoded (or `None` after a deletion was reported),
    // so that a change that leaves this instance's value alone is silent.
    let mut tried = Some(first.version);
    tokio::spawn(async move {
        loop {
            let change = tokio::select! {
                () = values_tx.closed() => break,
                change = changes.next() => match change {
                    Some(change) => change,
                    None => break,
                },
            };
            let seen = if change.key == view.key {
                seen_main
            } else {
                seen_gray
            };
            if change.version <= seen {
                continue;
            }
            let report = |kind: TypedErrorKind| {
                tracing::warn!(
                    key = %change.key,
                    version = change.version,
                    error = ?kind,
                    "config change rejected; the last good value stays live"
                );
                let _ = errors_tx.try_send(TypedError {
                    key: change.key.clone(),
                    version: change.version,
                    kind,
                });
            };
            if let Err(reason) = view.apply(&change) {
                report(TypedErrorKind::Decode(reason));
            }
            let effective = view.effective();
            if effective.as_ref().map(|v| v.version) == tried {
                continue;
            }
            tried = effective.as_ref().map(|v| v.version);
            match effective {
                None => report(TypedErrorKind::Deleted),
                Some(v) => match format.decode::<T>(&v.value) {
                    Ok(value) => {
                        values_tx.send_replace(Arc::new(value));
                    }
                    Err(reason) => report(TypedErrorKind::Decode(reason)),
                },
            }
        }
    });
    Ok(TypedWatch { values, errors })
}

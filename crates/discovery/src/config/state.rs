//! The state every backend keeps: keys with bounded histories, the store
//! revision, and the watchers to tell about each change.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use regex::Regex;
use tokio::sync::mpsc;

use super::{Change, ChangeKind, ConfigStoreError, Conflict, Versioned, WatchStream};

/// One write, before it is applied.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put(Bytes),
    CompareAndPut { value: Bytes, expected: u64 },
    Delete,
    Rollback(u64),
}

/// A key's values, oldest first; the newest is live unless `deleted`.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyState {
    pub(crate) history: VecDeque<Versioned>,
    pub(crate) deleted: bool,
}

impl KeyState {
    pub(crate) fn live(&self) -> Option<&Versioned> {
        if self.deleted {
            None
        } else {
            self.history.back()
        }
    }
}

/// The keys and the store revision.
#[derive(Debug, Clone, Default)]
pub(crate) struct Data {
    pub(crate) revision: u64,
    pub(crate) keys: BTreeMap<String, KeyState>,
}

impl Data {
    pub(crate) fn get(&self, key: &str) -> Option<Versioned> {
        self.keys.get(key).and_then(KeyState::live).cloned()
    }

    pub(crate) fn history(&self, key: &str) -> Vec<Versioned> {
        self.keys
            .get(key)
            .map(|k| k.history.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Applies `op` to `key`: the change watchers must hear about, or
    /// `None` if nothing changed (deleting a missing key).
    pub(crate) fn apply(
        &mut self,
        key: &str,
        op: Op,
        history_depth: usize,
    ) -> Result<Option<Change>, ConfigStoreError> {
        check_key(key)?;
        let state = self.keys.get(key);
        let current = state.and_then(KeyState::live).map(|v| v.version);
        let value = match op {
            Op::Put(value) => value,
            Op::CompareAndPut { value, expected } => {
                if current.unwrap_or(0) != expected {
                    return Err(Conflict {
                        key: key.to_owned(),
                        expected,
                        current,
                    }
                    .into());
                }
                value
            }
            Op::Rollback(version) => state
                .and_then(|s| s.history.iter().find(|v| v.version == version))
                .map(|v| v.value.clone())
                .ok_or_else(|| ConfigStoreError::VersionNotFound {
                    key: key.to_owned(),
                    version,
                })?,
            Op::Delete => {
                if current.is_none() {
                    return Ok(None);
                }
                self.revision += 1;
                if let Some(state) = self.keys.get_mut(key) {
                    state.deleted = true;
                }
                return Ok(Some(Change {
                    key: key.to_owned(),
                    version: self.revision,
                    kind: ChangeKind::Delete,
                    value: None,
                }));
            }
        };
        self.revision += 1;
        let version = self.revision;
        let state = self.keys.entry(key.to_owned()).or_default();
        state.deleted = false;
        state.history.push_back(Versioned {
            value: value.clone(),
            version,
        });
        while state.history.len() > history_depth {
            state.history.pop_front();
        }
        Ok(Some(Change {
            key: key.to_owned(),
            version,
            kind: ChangeKind::Put,
            value: Some(value),
        }))
    }
}

/// A value as stored in a JSON document: `"text"` if it is UTF-8,
/// `"bytes"` otherwise.
pub(crate) fn split_value(value: &Bytes) -> (Option<String>, Option<Vec<u8>>) {
    match std::str::from_utf8(value) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(value.to_vec())),
    }
}

/// The inverse of [`split_value`]: exactly one of the two must be present.
pub(crate) fn join_value(
    text: Option<String>,
    bytes: Option<Vec<u8>>,
) -> Result<Bytes, &'static str> {
    match (text, bytes) {
        (Some(text), None) => Ok(Bytes::from(text)),
        (None, Some(bytes)) => Ok(Bytes::from(bytes)),
        _ => Err("needs exactly one of \"text\" and \"bytes\""),
    }
}

pub(crate) fn check_key(key: &str) -> Result<(), ConfigStoreError> {
    if key.is_empty() {
        return Err(ConfigStoreError::InvalidKey {
            key: String::new(),
            reason: "must not be empty",
        });
    }
    Ok(())
}

/// Which keys a watcher wants.
#[derive(Debug)]
pub(crate) enum Filter {
    Prefix(String),
    Pattern(Regex),
}

impl Filter {
    pub(crate) fn pattern(pattern: &str) -> Result<Self, ConfigStoreError> {
        Regex::new(pattern).map(Filter::Pattern).map_err(|source| {
            ConfigStoreError::InvalidPattern {
                pattern: pattern.to_owned(),
                source,
            }
        })
    }

    pub(crate) fn matches(&self, key: &str) -> bool {
        match self {
            Filter::Prefix(prefix) => key.starts_with(prefix.as_str()),
            Filter::Pattern(re) => re.is_match(key),
        }
    }
}

/// The live watchers. Changes are sent while the store's lock is held, so
/// each watcher receives them in version order.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    list: Vec<(Filter, mpsc::UnboundedSender<Change>)>,
}

impl Watchers {
    pub(crate) fn add(&mut self, filter: Filter) -> WatchStream {
        let (tx, rx) = mpsc::unbounded_channel();
        self.list.push((filter, tx));
        WatchStream::new(rx)
    }

    /// Tells every matching watcher, and forgets the ones that are gone.
    pub(crate) fn notify(&mut self, change: &Change) {
        self.list.retain(|(filter, tx)| {
            if tx.is_closed() {
                return false;
            }
            !filter.matches(&change.key) || tx.send(change.clone()).is_ok()
        });
    }
}

/// Data and watchers under one lock.
#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub(crate) data: Data,
    pub(crate) watchers: Watchers,
}

/// [`Inner`] behind a short, never-awaited lock, with the read and watch
/// operations every backend shares.
#[derive(Debug, Default)]
pub(crate) struct Locked(std::sync::Mutex<Inner>);

impl Locked {
    pub(crate) fn new(data: Data) -> Self {
        Self(std::sync::Mutex::new(Inner {
            data,
            watchers: Watchers::default(),
        }))
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every statement leaves the state consistent, so a lock poisoned
        // by a panic elsewhere is still safe to use.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &str) -> Option<Versioned> {
        self.lock().data.get(key)
    }

    pub(crate) fn history(&self, key: &str) -> Vec<Versioned> {
        self.lock().data.history(key)
    }

    pub(crate) fn watch(&self, prefix: &str) -> WatchStream {
        self.lock().watchers.add(Filter::Prefix(prefix.to_owned()))
    }

    pub(crate) fn watch_pattern(&self, pattern: &str) -> Result<WatchStream, ConfigStoreError> {
        let filter = Filter::pattern(pattern)?;
        Ok(self.lock().watchers.add(filter))
    }

    /// Makes `change` (already applied to `data`) visible: publishes `data`
    /// and tells the watchers, under one lock.
    pub(crate) fn commit(&self, data: Option<Data>, change: &Change) {
        let mut inner = self.lock();
        if let Some(data) = data {
            inner.data = data;
        }
        inner.watchers.notify(change);
    }
}

//! A config store persisted to one JSON file, rewritten atomically.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::memory::written;
use super::state::{Data, KeyState, Locked, Op, join_value, split_value};
use super::{BoxFuture, ConfigStore, ConfigStoreError, StoreOptions, Versioned, WatchStream};

/// The file format's version, written as `"format"`.
const FORMAT: u32 = 1;

/// A [`ConfigStore`] persisted to one JSON file, with every key's history
/// and the store revision, so it survives a restart.
///
/// Every write builds the next state, writes it whole to a temporary file
/// beside the store file (`.<name>.tmp`), fsyncs it, renames it over the
/// store file and fsyncs the directory; only then is the write visible to
/// readers and watchers. A failed write returns
/// [`ConfigStoreError::Io`] and changes nothing, on disk or in memory. A
/// write that has started completes even if its future is dropped.
///
/// Writes cost time proportional to the whole store (it is rewritten each
/// time): this backend is meant for configuration, not for bulk data. One
/// process should open a given file at a time.
///
/// The format is JSON: `{"format": 1, "revision": N, "keys": {KEY:
/// {"deleted": bool, "history": [{"version": V, "text": "..."}]}}}`; a value
/// that is not UTF-8 is stored as `"bytes": [..]` instead of `"text"`.
#[derive(Debug, Clone)]
pub struct FileConfigStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    tmp_path: PathBuf,
    options: StoreOptions,
    state: Locked,
    /// Serialises writers, which run on blocking threads.
    writer: Mutex<()>,
}

impl FileConfigStore {
    /// Opens the store at `path`, or starts an empty one there if the file
    /// does not exist (its directory must). A file that exists but does not
    /// hold a valid store is refused with [`ConfigStoreError::Malformed`]
    /// naming the cause; it is never replaced by an empty store. Histories
    /// longer than `options.history_depth` are trimmed to it.
    pub async fn open(
        path: impl Into<PathBuf>,
        options: StoreOptions,
    ) -> Result<Self, ConfigStoreError> {
        let options = options.validate()?;
        let path = path.into();
        let read_path = path.clone();
        let data = tokio::task::spawn_blocking(move || load(&read_path, options))
            .await
            .map_err(|e| io_error(&path, std::io::Error::other(e)))??;
        let tmp_path = tmp_path(&path);
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                tmp_path,
                options,
                state: Locked::new(data),
                writer: Mutex::new(()),
            }),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn apply(&self, key: &str, op: Op) -> Result<Option<u64>, ConfigStoreError> {
        let shared = Arc::clone(&self.shared);
        let key = key.to_owned();
        let path = shared.path.clone();
        tokio::task::spawn_blocking(move || shared.apply(&key, op))
            .await
            .map_err(|e| io_error(&path, std::io::Error::other(e)))?
    }
}

impl Shared {
    /// Runs on a blocking thread: builds the next state, persists it, then
    /// publishes it and tells the watchers.
    fn apply(&self, key: &str, op: Op) -> Result<Option<u64>, ConfigStoreError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = self.state.lock().data.clone();
        let Some(change) = next.apply(key, op, self.options.history_depth)? else {
            return Ok(None);
        };
        let encoded = encode(&next);
        write_atomic(&self.path, &self.tmp_path, &encoded).map_err(|e| io_error(&self.path, e))?;
        self.state.commit(Some(next), &change);
        Ok(Some(change.version))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> ConfigStoreError {
    ConfigStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Writes `bytes` to `tmp`, fsyncs, renames it to `path` and fsyncs the
/// directory. On failure the temporary file is removed and `path` is
/// untouched.
fn write_atomic(path: &Path, tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let written = (|| {
        let mut file = File::create(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(tmp, path)
    })();
    if let Err(e) = written {
        if tmp.is_file() {
            let _ = fs::remove_file(tmp);
        }
        return Err(e);
    }
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileImage {
    format: u32,
    revision: u64,
    keys: BTreeMap<String, KeyImage>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyImage {
    deleted: bool,
    history: Vec<ValueImage>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueImage {
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<Vec<u8>>,
}

fn encode(data: &Data) -> Vec<u8> {
    let keys = data
        .keys
        .iter()
        .map(|(key, state)| {
            let history = state
                .history
                .iter()
                .map(|v| {
                    let (text, bytes) = split_value(&v.value);
                    ValueImage {
                        version: v.version,
                        text,
                        bytes,
                    }
                })
                .collect();
            let image = KeyImage {
                deleted: state.deleted,
                history,
            };
            (key.clone(), image)
        })
        .collect();
    let image = FileImage {
        format: FORMAT,
        revision: data.revision,
        keys,
    };
    // Strings, integers, booleans and maps with string keys: encoding
    // cannot fail.
    serde_json::to_vec_pretty(&image).unwrap_or_default()
}

fn load(path: &Path, options: StoreOptions) -> Result<Data, ConfigStoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Data::default()),
        Err(e) => return Err(io_error(path, e)),
    };
    decode(&bytes, options).map_err(|reason| ConfigStoreError::Malformed {
        path: path.to_owned(),
        reason,
    })
}

fn decode(bytes: &[u8], options: StoreOptions) -> Result<Data, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let image: FileImage =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    if image.format != FORMAT {
        return Err(format!(
            "unsupported format {}, expected {FORMAT}",
            image.format
        ));
    }
    let mut keys = BTreeMap::new();
    for (key, k) in image.keys {
        if key.is_empty() {
            return Err("an empty key".into());
        }
        if k.history.is_empty() {
            return Err(format!("key {key:?} has an empty history"));
        }
        let mut history = VecDeque::with_capacity(k.history.len());
        let mut previous = 0;
        for v in k.history {
            if v.version <= previous || v.version > image.revision {
                return Err(format!(
                    "key {key:?}: version {} out of order or above the store revision {}",
                    v.version, image.revision
                ));
            }
            previous = v.version;
            let value = join_value(v.text, v.bytes)
                .map_err(|e| format!("key {key:?} version {}: {e}", v.version))?;
            history.push_back(Versioned {
                value,
                version: v.version,
            });
        }
        while history.len() > options.history_depth {
            history.pop_front();
        }
        keys.insert(
            key,
            KeyState {
                history,
                deleted: k.deleted,
            },
        );
    }
    Ok(Data {
        revision: image.revision,
        keys,
    })
}

impl ConfigStore for FileConfigStore {
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Versioned>, ConfigStoreError>> {
        Box::pin(async move { Ok(self.shared.state.get(key)) })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
    ) -> BoxFuture<'a, Result<u64, ConfigStoreError>> {
        Box::pin(async move { written(self.apply(key, Op::Put(value)).await) })
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
        Box::pin(async move { written(self.apply(key, op).await) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, ConfigStoreError>> {
        Box::pin(self.apply(key, Op::Delete))
    }

    fn history<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Versioned>, ConfigStoreError>> {
        Box::pin(async move { Ok(self.shared.state.history(key)) })
    }

    fn rollback<'a>(
        &'a self,
        key: &'a str,
        version: u64,
    ) -> BoxFuture<'a, Result<u64, ConfigStoreError>> {
        Box::pin(async move { written(self.apply(key, Op::Rollback(version)).await) })
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<WatchStream, ConfigStoreError>> {
        Box::pin(async move { Ok(self.shared.state.watch(prefix)) })
    }

    fn watch_pattern<'a>(
        &'a self,
        pattern: &'a str,
    ) -> BoxFuture<'a, Result<WatchStream, ConfigStoreError>> {
        Box::pin(async move { self.shared.state.watch_pattern(pattern) })
    }
}

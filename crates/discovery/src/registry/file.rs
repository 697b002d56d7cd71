//! [`FileRegistry`]: instances listed in a TOML or JSON file, watched for
//! edits.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use rampart_core::ConfigError;
use rampart_core::error::validate;
use serde::{Deserialize, Deserializer};
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::SourceError;
use super::list::{self, by_service};
use super::source::{Source, read_only_registry};
use crate::config::Format;

/// The settings of a [`FileRegistry`].
///
/// Deserializes from TOML with every field but `path` optional, durations
/// as `"1s"` (an integer is milliseconds) and unknown keys refused:
///
/// ```
/// use rampart_discovery::config::Format;
/// use rampart_discovery::registry::FileRegistryConfig;
/// use std::time::Duration;
///
/// let config: FileRegistryConfig = toml::from_str(r#"
///     name = "edge"
///     path = "/etc/rampart/instances.conf"
///     format = "toml"
///     poll_interval = "500ms"
/// "#).unwrap();
/// assert_eq!(config, FileRegistryConfig::new("/etc/rampart/instances.conf")
///     .name("edge")
///     .format(Format::Toml)
///     .poll_interval(Duration::from_millis(500)));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileRegistryConfig {
    name: String,
    path: PathBuf,
    #[serde(deserialize_with = "format_name")]
    format: Option<Format>,
    #[serde(with = "rampart_core::duration")]
    poll_interval: Duration,
}

impl Default for FileRegistryConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            path: PathBuf::new(),
            format: None,
            poll_interval: Duration::from_secs(1),
        }
    }
}

fn format_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Format>, D::Error> {
    match String::deserialize(d)?.as_str() {
        "toml" => Ok(Some(Format::Toml)),
        "json" => Ok(Some(Format::Json)),
        other => Err(serde::de::Error::invalid_value(
            serde::de::Unexpected::Str(other),
            &"\"toml\" or \"json\"",
        )),
    }
}

impl FileRegistryConfig {
    /// The defaults, watching the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// The registry's name, put on every metric as the `name` label and on
    /// every tracing event. Defaults to `""` (no label).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The file's format. Defaults to none: told by the file name's
    /// extension, `.toml` or `.json`.
    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// How often the file is checked for edits. Must be longer than zero.
    /// Defaults to 1 s.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Checks the settings, naming the first field at fault: an empty
    /// `path`, or a zero `poll_interval`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::new("path", "must not be empty"));
        }
        validate::non_zero_duration("poll_interval", self.poll_interval)?;
        Ok(())
    }

    /// Validates the settings, loads the file and starts watching it: see
    /// [`FileRegistry::open`].
    pub async fn open(self) -> Result<FileRegistry, SourceError> {
        FileRegistry::open(self).await
    }
}

/// A registry of the instances listed in a TOML or JSON file (see the
/// [list format](super::list)), with edits applied live.
///
/// # Watching the file
///
/// Every [`poll_interval`](FileRegistryConfig::poll_interval) (1 s by
/// default) on the tokio clock, the file's length, modification time and
/// inode are read; when one changed (an edit in place, or an editor's
/// rename of a new file over it) the file is read and its content hashed,
/// and a content already seen (a write of the same bytes) changes nothing.
/// Since a file system's timestamps can be too coarse to show an edit that
/// keeps the length, a file modified within 2 s of its last read is read
/// and hashed at every check until it is older. A new content is parsed
/// and becomes the registry's instances: watchers get the differences
/// (insert, update, remove), each with the next revision.
///
/// # Under failure
///
/// - A file that is missing, unreadable or refused when
///   [`open`](Self::open) is called is an error: the registry does not
///   start empty.
/// - Later, a file that does not parse or lists an invalid instance, or a
///   file that is deleted or unreadable, changes no instance: the last
///   good set stays live, [`Discovered::stale`](super::Discovered::stale)
///   turns true, every watcher gets one `Err(`[`RegistryError::Source`](super::RegistryError::Source)`)`
///   naming the cause (file, entry and line), [`SOURCE_ERRORS_TOTAL`](super::SOURCE_ERRORS_TOTAL)
///   counts it and a `warn` event logs it. The same failure is reported
///   once, not at every check. When the file is good again, its instances
///   apply and `stale` turns false.
///
/// It is read-only: [`register`](super::Registry::register),
/// [`heartbeat`](super::Registry::heartbeat) and
/// [`deregister`](super::Registry::deregister) fail with
/// [`RegistryError::ReadOnly`](super::RegistryError::ReadOnly);
/// [`set_health`](super::Registry::set_health) keeps the health of an
/// instance in memory over the file (the file is never rewritten), as long
/// as the file lists that instance. Clones share the registry; when the
/// last one is dropped, the checks stop and every watch ends.
///
/// ```no_run
/// use rampart_discovery::registry::{FileRegistry, FileRegistryConfig, Registry, ServiceName};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = FileRegistry::open(FileRegistryConfig::new("/etc/rampart/instances.toml")).await?;
/// let orders: ServiceName = "shop/orders".parse()?;
/// let mut changes = registry.watch(&orders).await?;
/// while let Some(change) = changes.next().await {
///     println!("{change:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FileRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    source: Source,
    path: PathBuf,
    format: Format,
    file: Mutex<FileState>,
    poller: Mutex<Option<AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(poller) = self
            .poller
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
        {
            poller.abort();
        }
    }
}

/// What the file looked like at the last check.
#[derive(Debug)]
struct FileState {
    /// `None` after a failed read: the next check reads the file.
    stamp: Option<Stamp>,
    /// Wall-clock time of the last read, to tell racy timestamps.
    read_at: SystemTime,
    /// The hash of the content the instances come from.
    live: u64,
    /// The hash of the content last read (good or not).
    seen: u64,
    /// A read failure has been reported and not resolved.
    io_failing: bool,
}

/// What tells a changed file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// How close to its last read a file's modification time must be for its
/// timestamps not to be trusted.
const RACY: Duration = Duration::from_secs(2);

/// What a check found.
enum Probe {
    Unchanged,
    Failed(std::io::Error),
    Read {
        stamp: Stamp,
        bytes: Vec<u8>,
        read_at: SystemTime,
    },
}

impl FileRegistry {
    /// Validates `config`, loads its file and starts checking it for edits
    /// (on a task of the current tokio runtime). A missing or unreadable
    /// file is [`SourceError::Io`], one that does not parse or lists an
    /// invalid instance [`SourceError::Syntax`] or [`SourceError::Entry`],
    /// a file name that tells no format [`SourceError::UnknownFormat`], and
    /// bad settings [`SourceError::Config`].
    pub async fn open(config: FileRegistryConfig) -> Result<Self, SourceError> {
        config.validate()?;
        let path = config.path.clone();
        let format = match config.format {
            Some(f) => f,
            None => match path.extension().and_then(|e| e.to_str()) {
                Some("toml") => Format::Toml,
                Some("json") => Format::Json,
                _ => return Err(SourceError::UnknownFormat { path }),
            },
        };
        let read_path = path.clone();
        let first = tokio::task::spawn_blocking(move || read(&read_path))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let (stamp, bytes, read_at) = first.map_err(|e| SourceError::Io {
            path: path.clone(),
            source: Arc::new(e),
        })?;
        let hash = hash(&bytes);
        let instances = decode(&bytes, format, &path)?;
        let source = Source::new(config.name.clone());
        let count = instances.len();
        source.lock().replace_all(by_service(instances));
        let inner = Arc::new(Inner {
            source,
            path,
            format,
            file: Mutex::new(FileState {
                stamp: Some(stamp),
                read_at,
                live: hash,
                seen: hash,
                io_failing: false,
            }),
            poller: Mutex::new(None),
        });
        let poller = tokio::spawn(poll(Arc::downgrade(&inner), config.poll_interval));
        *inner.poller.lock().unwrap_or_else(PoisonError::into_inner) = Some(poller.abort_handle());
        tracing::info!(registry = %inner.source.name(), path = %inner.path.display(), instances = count, "file registry loaded");
        Ok(Self { inner })
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The revision of the latest change.
    pub fn revision(&self) -> u64 {
        self.inner.source.lock().revision()
    }

    fn source(&self) -> &Source {
        &self.inner.source
    }
}

read_only_registry!(FileRegistry, "file");

/// Checks the file every `every` until the registry is gone.
async fn poll(inner: Weak<Inner>, every: Duration) {
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.check().await;
    }
}

impl Inner {
    fn file(&self) -> std::sync::MutexGuard<'_, FileState> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One check of the file: applies a new content, or reports a failure.
    async fn check(&self) {
        let last = {
            let file = self.file();
            file.stamp.map(|s| (s, file.read_at))
        };
        let probe = probe_blocking(self.path.clone(), last).await;
        let mut file = self.file();
        match probe {
            Probe::Unchanged => {}
            Probe::Failed(e) => {
                file.stamp = None;
                if !file.io_failing {
                    file.io_failing = true;
                    self.fail(SourceError::Io {
                        path: self.path.clone(),
                        source: Arc::new(e),
                    });
                }
            }
            Probe::Read {
                stamp,
                bytes,
                read_at,
            } => {
                file.stamp = Some(stamp);
                file.read_at = read_at;
                let hash = hash(&bytes);
                let recovered = file.io_failing || file.seen != file.live;
                file.io_failing = false;
                if hash == file.live {
                    file.seen = hash;
                    if recovered {
                        self.source.lock().clear_stale();
                        tracing::info!(registry = %self.source.name(), path = %self.path.display(), "file good again, unchanged from the live instances");
                    }
                    return;
                }
                if hash == file.seen {
                    return;
                }
                file.seen = hash;
                match decode(&bytes, self.format, &self.path) {
                    Ok(instances) => {
                        file.live = hash;
                        let count = instances.len();
                        let changes = self.source.lock().replace_all(by_service(instances));
                        tracing::info!(registry = %self.source.name(), path = %self.path.display(), instances = count, changes, "file reloaded");
                    }
                    Err(e) => self.fail(e),
                }
            }
        }
    }

    /// Keeps the last good instances, marked stale, and reports `error`.
    fn fail(&self, error: SourceError) {
        tracing::warn!(registry = %self.source.name(), %error, "file refused, last good instances kept");
        self.source.count_error(None);
        let mut snapshot = self.source.lock();
        snapshot.mark_stale(None);
        snapshot.report(None, error);
    }
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn decode(bytes: &[u8], format: Format, path: &Path) -> Result<Vec<super::Instance>, SourceError> {
    let origin = path.display().to_string();
    let text = std::str::from_utf8(bytes).map_err(|e| SourceError::Syntax {
        origin: origin.clone(),
        line: None,
        message: format!("not UTF-8: {e}"),
    })?;
    list::parse(text, format, &origin)
}

/// [`probe`] on a blocking thread.
async fn probe_blocking(path: PathBuf, last: Option<(Stamp, SystemTime)>) -> Probe {
    tokio::task::spawn_blocking(move || probe(&path, last))
        .await
        .unwrap_or_else(|e| Probe::Failed(std::io::Error::other(e)))
}

/// Reads the file unless its stamp is `last`'s and not racy.
fn probe(path: &Path, last: Option<(Stamp, SystemTime)>) -> Probe {
    if let Some((last, read_at)) = last {
        match stamp(path) {
            Ok(now) => {
                let racy = now.modified.is_none_or(|m| m + RACY >= read_at);
                if now == last && !racy {
                    return Probe::Unchanged;
                }
            }
            Err(e) => return Probe::Failed(e),
        }
    }
    match read(path) {
        Ok((stamp, bytes, read_at)) => Probe::Read {
            stamp,
            bytes,
            read_at,
        },
        Err(e) => Probe::Failed(e),
    }
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: inode(&meta),
    })
}

/// The file's stamp (taken first, so an edit racing the read is seen
/// again), content and the wall-clock time of the read.
fn read(path: &Path) -> std::io::Result<(Stamp, Vec<u8>, SystemTime)> {
    let stamp = stamp(path)?;
    let read_at = SystemTime::now();
    Ok((stamp, std::fs::read(path)?, read_at))
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> u64 {
    0
}

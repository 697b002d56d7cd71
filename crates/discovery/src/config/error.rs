//! The config store's error type.

use std::fmt;
use std::path::PathBuf;

/// A compare-and-put found another version than the one expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The key that was written.
    pub key: String,
    /// The version the caller expected (`0`: "must not exist").
    pub expected: u64,
    /// The key's current version, or `None` if it does not exist.
    pub current: Option<u64>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.current {
            Some(current) => write!(
                f,
                "version conflict on {:?}: expected {}, current {current}",
                self.key, self.expected
            ),
            None => write!(
                f,
                "version conflict on {:?}: expected {}, key does not exist",
                self.key, self.expected
            ),
        }
    }
}

impl std::error::Error for Conflict {}

/// Why a [`ConfigStore`](super::ConfigStore) operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigStoreError {
    /// A compare-and-put found another version.
    Conflict(Conflict),
    /// A rollback named a version that is not in the key's history.
    VersionNotFound {
        /// The key.
        key: String,
        /// The version asked for.
        version: u64,
    },
    /// A key was refused (empty).
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// A watch pattern is not a valid regular expression.
    InvalidPattern {
        /// The pattern.
        pattern: String,
        /// The regex compiler's explanation.
        source: regex::Error,
    },
    /// The options were refused.
    Options(rampart_core::ConfigError),
    /// Reading or writing the store's file failed; the store's state is
    /// unchanged.
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A typed watch's key does not exist.
    NotFound {
        /// The key.
        key: String,
    },
    /// A typed watch's first value does not decode.
    Decode {
        /// The key.
        key: String,
        /// The version that does not decode.
        version: u64,
        /// The decoder's explanation.
        reason: String,
    },
    /// The store's backend (etcd) failed or could not be reached; nothing
    /// was written.
    Backend(rampart_core::BoxError),
    /// The store's file exists but does not hold a valid store.
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for ConfigStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conflict(c) => c.fmt(f),
            Self::VersionNotFound { key, version } => {
                write!(f, "version {version} of {key:?} is not in its history")
            }
            Self::InvalidKey { key, reason } => write!(f, "invalid key {key:?}: {reason}"),
            Self::InvalidPattern { pattern, .. } => {
                write!(f, "invalid watch pattern {pattern:?}")
            }
            Self::Options(e) => e.fmt(f),
            Self::NotFound { key } => write!(f, "key {key:?} does not exist"),
            Self::Decode {
                key,
                version,
                reason,
            } => write!(f, "version {version} of {key:?} does not decode: {reason}"),
            Self::Io { path, .. } => write!(f, "config store file {}: i/o error", path.display()),
            Self::Backend(e) => write!(f, "config store backend failed: {e}"),
            Self::Malformed { path, reason } => {
                write!(
                    f,
                    "malformed config store file {}: {reason}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for ConfigStoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidPattern { source, .. } => Some(source),
            Self::Io { source, .. } => Some(source),
            Self::Options(e) => Some(e),
            Self::Backend(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<Conflict> for ConfigStoreError {
    fn from(c: Conflict) -> Self {
        Self::Conflict(c)
    }
}

impl From<rampart_core::ConfigError> for ConfigStoreError {
    fn from(e: rampart_core::ConfigError) -> Self {
        Self::Options(e)
    }
}

//! The instance list format of [`StaticRegistry`](super::StaticRegistry) and
//! [`FileRegistry`](super::FileRegistry), and [`SourceError`], why a
//! read-only registry's source was refused.
//!
//! A list is a TOML or JSON document with one array, `instance`, of
//! instances. Each has the fields of an [`Instance`]: `id`, `service`
//! (`namespace/group/service`, see [`ServiceName`]), `address` (an IP
//! address or DNS host name) and `port` are required; `weight` (default 1),
//! `zone`, `metadata` (a table of strings) and `health` (`"healthy"`,
//! `"unhealthy"` or `"unknown"`, default healthy) are optional; any other
//! key is refused. Ids are unique within a service.
//!
//! ```toml
//! [[instance]]
//! id = "orders-1"
//! service = "shop/orders"
//! address = "10.0.0.7"
//! port = 8080
//! weight = 5
//! zone = "eu-1a"
//! metadata = { version = "1.4.2" }
//!
//! [[instance]]
//! id = "orders-2"
//! service = "shop/orders"
//! address = "orders-2.internal"
//! port = 8080
//! ```
//!
//! The same in JSON: `{"instance": [{"id": "orders-1", "service":
//! "shop/orders", "address": "10.0.0.7", "port": 8080, "weight": 5, ...}]}`.
//! An empty document (or an empty array) is an empty list.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::instance::RawInstance;
use super::{Instance, InstanceError, ServiceName};
use crate::config::Format;

/// Why one entry of an instance list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryProblem {
    /// The entry does not decode: a missing or unknown field, a wrong type.
    Decode(String),
    /// The entry decodes but is not a valid instance.
    Invalid(InstanceError),
    /// An earlier entry has the same id in the same service.
    DuplicateId(ServiceName),
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(e) => f.write_str(e),
            Self::Invalid(e) => write!(f, "{e}"),
            Self::DuplicateId(service) => {
                write!(f, "an earlier entry has the same id in service {service}")
            }
        }
    }
}

/// Why a read-only registry's source was refused or failed: the list does
/// not parse, an entry is not a valid instance, the file cannot be read, a
/// DNS lookup failed.
///
/// A registry that already serves instances keeps them when its source
/// fails (marked stale) and sends this error to its watchers as
/// [`RegistryError::Source`](super::RegistryError::Source).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SourceError {
    /// The text is not a list: invalid TOML or JSON, or not the list's
    /// shape.
    Syntax {
        /// Where the text came from: `"static list"` or the file's path.
        origin: String,
        /// The line (from 1) the parser stopped at, if it says.
        line: Option<usize>,
        /// The parser's explanation.
        message: String,
    },
    /// Entry `entry` of the list was refused.
    Entry {
        /// Where the text came from: `"static list"` or the file's path.
        origin: String,
        /// The entry's position in the list, from 1.
        entry: usize,
        /// The line (from 1) the entry starts on (TOML only).
        line: Option<usize>,
        /// The entry's id, if it has one.
        id: Option<String>,
        /// What is wrong with it.
        problem: Box<EntryProblem>,
    },
    /// The file could not be read (it is missing, or unreadable).
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: Arc<std::io::Error>,
    },
    /// The file's name does not end in `.toml` or `.json` and no format
    /// was configured.
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The registry's settings were refused.
    Config(rampart_core::ConfigError),
    /// A DNS lookup failed (a timeout, a server failure, `NXDOMAIN`).
    Lookup {
        /// The service looked up.
        service: ServiceName,
        /// The DNS name queried.
        name: String,
        /// The resolver's explanation.
        reason: String,
    },
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax {
                origin,
                line,
                message,
            } => {
                write!(f, "{origin}")?;
                if let Some(line) = line {
                    write!(f, ", line {line}")?;
                }
                write!(f, ": not an instance list: {message}")
            }
            Self::Entry {
                origin,
                entry,
                line,
                id,
                problem,
            } => {
                write!(f, "{origin}, entry {entry}")?;
                match (line, id) {
                    (Some(line), Some(id)) => write!(f, " (line {line}, id {id:?})")?,
                    (Some(line), None) => write!(f, " (line {line})")?,
                    (None, Some(id)) => write!(f, " (id {id:?})")?,
                    (None, None) => {}
                }
                write!(f, ": {problem}")
            }
            Self::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::UnknownFormat { path } => write!(
                f,
                "cannot tell the format of {}: name it .toml or .json, or configure the format",
                path.display()
            ),
            Self::Config(e) => write!(f, "{e}"),
            Self::Lookup {
                service,
                name,
                reason,
            } => write!(f, "dns lookup of {name} for {service} failed: {reason}"),
        }
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(&**source),
            Self::Entry { problem, .. } => match &**problem {
                EntryProblem::Invalid(e) => Some(e),
                _ => None,
            },
            Self::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rampart_core::ConfigError> for SourceError {
    fn from(e: rampart_core::ConfigError) -> Self {
        Self::Config(e)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlList {
    #[serde(default)]
    instance: Vec<toml::Spanned<toml::Table>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonList {
    #[serde(default)]
    instance: Vec<serde_json::Value>,
}

/// One entry of a list before validation: its line, its decoded form (or
/// why it does not decode), its id if it has one.
type RawEntry = (Option<usize>, Result<RawInstance, String>, Option<String>);

/// Parses a list (see the [module docs](self)), naming `origin` in errors.
pub(crate) fn parse(
    text: &str,
    format: Format,
    origin: &str,
) -> Result<Vec<Instance>, SourceError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let syntax = |line, message: String| SourceError::Syntax {
        origin: origin.to_owned(),
        line,
        message: message.trim_end().to_owned(),
    };
    let entries: Vec<RawEntry> = match format {
        Format::Toml => {
            let list: TomlList = toml::from_str(text)
                .map_err(|e| syntax(e.span().map(|s| line_of(s.start)), e.message().to_owned()))?;
            list.instance
                .into_iter()
                .map(|entry| {
                    let line = line_of(entry.span().start);
                    let table = entry.into_inner();
                    let id = table.get("id").and_then(|v| v.as_str()).map(str::to_owned);
                    let raw = RawInstance::deserialize(toml::Value::Table(table))
                        .map_err(|e| e.message().to_owned());
                    (Some(line), raw, id)
                })
                .collect()
        }
        Format::Json => {
            let list: JsonList =
                serde_json::from_str(if text.trim().is_empty() { "{}" } else { text })
                    .map_err(|e| syntax(Some(e.line()), e.to_string()))?;
            list.instance
                .into_iter()
                .map(|value| {
                    let id = value.get("id").and_then(|v| v.as_str()).map(str::to_owned);
                    let raw = RawInstance::deserialize(value).map_err(|e| e.to_string());
                    (None, raw, id)
                })
                .collect()
        }
    };
    let mut instances = Vec::with_capacity(entries.len());
    let mut lines = Vec::with_capacity(entries.len());
    for (n, (line, raw, id)) in entries.into_iter().enumerate() {
        let refused = |problem| SourceError::Entry {
            origin: origin.to_owned(),
            entry: n + 1,
            line,
            id: id.clone(),
            problem: Box::new(problem),
        };
        let raw = raw.map_err(|e| refused(EntryProblem::Decode(e)))?;
        instances.push(Instance::try_from(raw).map_err(|e| refused(EntryProblem::Invalid(e)))?);
        lines.push(line);
    }
    check_unique(&instances, origin, &lines)?;
    Ok(instances)
}

/// Checks that no two of `instances` share a service and an id; the error
/// names the second one's position (from 1) and its line from `lines`, if
/// given.
pub(crate) fn check_unique(
    instances: &[Instance],
    origin: &str,
    lines: &[Option<usize>],
) -> Result<(), SourceError> {
    let mut seen = HashSet::new();
    for (n, i) in instances.iter().enumerate() {
        if !seen.insert((i.service(), i.id())) {
            return Err(SourceError::Entry {
                origin: origin.to_owned(),
                entry: n + 1,
                line: lines.get(n).copied().flatten(),
                id: Some(i.id().to_owned()),
                problem: Box::new(EntryProblem::DuplicateId(i.service().clone())),
            });
        }
    }
    Ok(())
}

/// Groups `instances` by service.
pub(crate) fn by_service(instances: Vec<Instance>) -> BTreeMap<ServiceName, Vec<Instance>> {
    let mut sets: BTreeMap<ServiceName, Vec<Instance>> = BTreeMap::new();
    for i in instances {
        sets.entry(i.service().clone()).or_default().push(i);
    }
    sets
}

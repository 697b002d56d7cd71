//! What a registry answers: [`Discovered`] snapshots, [`Event`]s and the
//! [`Watch`] stream that carries them, [`LeaseId`]s and [`RegistryError`].

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Instance, ServiceName, SourceError};

/// The handle of one registration, returned by
/// [`Registry::register`](super::Registry::register): heartbeats and
/// deregistration name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(pub u64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease {}", self.0)
    }
}

/// A service's instances at one revision, from
/// [`Registry::discover`](super::Registry::discover).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The registry's revision when the snapshot was taken: every change
    /// up to it is included, none after it.
    pub revision: u64,
    /// The instances, ordered by id.
    pub instances: Vec<Instance>,
    /// The backend could not be reached (or its source failed: a file that
    /// went missing or does not parse, a DNS lookup that failed), so these
    /// are the last instances known (at `revision`), not a fresh answer.
    /// Always `false` for the embedded registry.
    pub stale: bool,
}

/// What happened to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The instance is new to the service (or the watch's initial set).
    Insert,
    /// An instance of the same id registered again with new data.
    Update,
    /// The instance left: deregistered, or its lease ran out.
    Remove,
}

/// One change to a watched service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The registry revision of this change. Revisions are shared by all
    /// services and strictly increase, so a watch's events are in strictly
    /// increasing revision order.
    pub revision: u64,
    /// Insert, update or remove.
    pub kind: EventKind,
    /// The instance as inserted or updated, or as it last was when removed.
    pub instance: Instance,
}

/// Why a registry call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RegistryError {
    /// The lease is not (or no longer) known: it was deregistered, replaced
    /// by a newer registration of the same instance, or it expired. Register
    /// again.
    UnknownLease(LeaseId),
    /// The service has no instance of this id (never registered, or
    /// removed since).
    UnknownInstance {
        /// The service asked about.
        service: ServiceName,
        /// The instance id it does not have.
        id: String,
    },
    /// A time to live of zero was asked for.
    InvalidTtl(Duration),
    /// The registry's backend failed (a connection, a remote store).
    Backend(rampart_core::BoxError),
    /// The registry is read-only (a static list, a file, DNS): its
    /// instances come from its source, so `register`, `heartbeat` and
    /// `deregister` are refused. `set_health` works.
    ReadOnly {
        /// Which backend: `"static"`, `"file"` or `"dns"`.
        backend: &'static str,
    },
    /// A read-only registry's source failed (a file that does not parse or
    /// went missing, a DNS lookup that failed). Sent to watchers, which go
    /// on: the last good instances stay live, marked stale, and later
    /// changes arrive as usual.
    Source(Arc<SourceError>),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownLease(id) => write!(f, "unknown {id} (deregistered, replaced or expired)"),
            Self::UnknownInstance { service, id } => {
                write!(f, "service {service} has no instance {id:?}")
            }
            Self::InvalidTtl(ttl) => write!(f, "invalid ttl {ttl:?}: must be longer than zero"),
            Self::Backend(e) => write!(f, "registry backend failed: {e}"),
            Self::ReadOnly { backend } => write!(
                f,
                "the {backend} registry is read-only: instances come from its source"
            ),
            Self::Source(e) => write!(f, "registry source failed, last good instances kept: {e}"),
        }
    }
}

impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend(e) => Some(&**e),
            Self::Source(e) => Some(&**e),
            _ => None,
        }
    }
}

/// The changes of one service, from
/// [`Registry::watch`](super::Registry::watch): first an
/// [`Insert`](EventKind::Insert) for every current instance, then every
/// later change exactly once, all in increasing revision order.
///
/// It is a [`Stream`](futures_core::Stream) and also has
/// [`next`](Self::next). It ends when the registry is dropped. Events queue
/// without bound until read, so a watch that is kept must be read (drop it
/// to unsubscribe).
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::UnboundedReceiver<Result<Event, RegistryError>>,
}

impl Watch {
    /// A watch fed by `rx`: how a backend makes one.
    pub fn from_receiver(rx: mpsc::UnboundedReceiver<Result<Event, RegistryError>>) -> Self {
        Self { rx }
    }

    /// The next event, or `None` once the registry is gone.
    pub async fn next(&mut self) -> Option<Result<Event, RegistryError>> {
        self.rx.recv().await
    }

    /// The next event if one is queued, without waiting.
    pub fn try_next(&mut self) -> Option<Result<Event, RegistryError>> {
        self.rx.try_recv().ok()
    }
}

impl futures_core::Stream for Watch {
    type Item = Result<Event, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

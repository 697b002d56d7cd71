//! What the etcd registry and the etcd config store share: the connection
//! settings, timed calls, reconnect backoff, and a prefix watch that
//! resumes from the last revision it saw.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions};
use rampart_core::ConfigError;
use rampart_core::error::validate;
use tokio::sync::watch;

// === impl Connection ===

/// The connection settings both etcd backends take.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Connection<'a> {
    pub(crate) endpoints: &'a [String],
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
}

impl Connection<'_> {
    /// Checks the settings, naming the first field at fault.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::new("endpoints", "must list at least one"));
        }
        for e in self.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(ConfigError::new(
                    "endpoints",
                    format!("{e:?} must start with http:// or https://"),
                ));
            }
        }
        validate::non_zero_duration("connect_timeout", self.connect_timeout)?;
        validate::non_zero_duration("request_timeout", self.request_timeout)?;
        validate::non_zero_duration("backoff_min", self.backoff_min)?;
        if self.backoff_max < self.backoff_min {
            return Err(ConfigError::new(
                "backoff_max",
                format!(
                    "must be at least backoff_min ({:?}), got {:?}",
                    self.backoff_min, self.backoff_max
                ),
            ));
        }
        Ok(())
    }

    /// A client for the endpoints. The connection is lazy: an unreachable
    /// etcd is not an error here, only an endpoint that is not a URL.
    pub(crate) async fn connect(&self) -> Result<Client, ConfigError> {
        self.validate()?;
        // No per-request timeout on the client: it would also cut the
        // long-lived watch streams. Unary calls are timed with `timed`.
        let options = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(self.request_timeout, self.request_timeout)
            .with_keep_alive_while_idle(true);
        Client::connect(self.endpoints, Some(options))
            .await
            .map_err(|e| ConfigError::new("endpoints", e.to_string()))
    }
}

/// Strips the trailing slashes of a key prefix, refusing an empty one.
pub(crate) fn normalize_prefix(prefix: &str) -> Result<String, ConfigError> {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(ConfigError::new("prefix", "must not be empty"));
    }
    Ok(trimmed.to_owned())
}

/// The connection setters both etcd configs share (fields `endpoints`,
/// `connect_timeout`, `request_timeout`, `backoff_min`, `backoff_max`), and
/// `connection()` over them.
macro_rules! connection_setters {
    () => {
        /// The etcd endpoints (`http://host:port`). Defaults to
        /// `["http://127.0.0.1:2379"]`.
        pub fn endpoints<I: IntoIterator<Item = S>, S: Into<String>>(
            mut self,
            endpoints: I,
        ) -> Self {
            self.endpoints = endpoints.into_iter().map(Into::into).collect();
            self
        }

        /// How long connecting to an endpoint may take. Defaults to 5 s.
        pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.connect_timeout = timeout;
            self
        }

        /// How long one call to etcd may take (also the HTTP/2 keep-alive
        /// interval and timeout that detect a dead connection under a
        /// watch). Defaults to 5 s.
        pub fn request_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.request_timeout = timeout;
            self
        }

        /// The first pause before a watch reconnects; it doubles on each
        /// failed attempt. Defaults to 100 ms.
        pub fn backoff_min(mut self, backoff: std::time::Duration) -> Self {
            self.backoff_min = backoff;
            self
        }

        /// The longest pause between reconnect attempts. Defaults to 10 s.
        pub fn backoff_max(mut self, backoff: std::time::Duration) -> Self {
            self.backoff_max = backoff;
            self
        }

        fn connection(&self) -> $crate::etcd::Connection<'_> {
            $crate::etcd::Connection {
                endpoints: &self.endpoints,
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
                backoff_min: self.backoff_min,
                backoff_max: self.backoff_max,
            }
        }
    };
}
pub(crate) use connection_setters;

/// The default connection settings: `(endpoints, connect_timeout,
/// request_timeout, backoff_min, backoff_max)`.
pub(crate) fn default_connection() -> (Vec<String>, Duration, Duration, Duration, Duration) {
    (
        vec!["http://127.0.0.1:2379".to_owned()],
        Duration::from_secs(5),
        Duration::from_secs(5),
        Duration::from_millis(100),
        Duration::from_secs(10),
    )
}

// === impl CallError ===

/// A call to etcd that failed or took longer than the request timeout.
#[derive(Debug)]
pub(crate) enum CallError {
    Timeout(Duration),
    Etcd(etcd_client::Error),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(t) => write!(f, "etcd did not answer within {t:?}"),
            Self::Etcd(e) => write!(f, "etcd call failed: {e}"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Timeout(_) => None,
            Self::Etcd(e) => Some(e),
        }
    }
}

impl CallError {
    /// Whether etcd answered that the thing asked about does not exist
    /// (gRPC `NotFound`, or a keep-alive of an unknown lease).
    pub(crate) fn is_not_found(&self) -> bool {
        /// `tonic::Code::NotFound` (gRPC status 5).
        const NOT_FOUND: i32 = 5;
        match self {
            Self::Etcd(etcd_client::Error::GRpcStatus(s)) => s.code() as i32 == NOT_FOUND,
            Self::Etcd(etcd_client::Error::LeaseKeepAliveError(msg)) => msg.contains("not found"),
            _ => false,
        }
    }
}

/// Runs one etcd call, failing with [`CallError::Timeout`] after `timeout`.
pub(crate) async fn timed<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(CallError::Etcd),
        Err(_) => Err(CallError::Timeout(timeout)),
    }
}

// === impl Backoff ===

/// Exponential reconnect backoff: `min`, doubling up to `max`, back to
/// `min` once a connection works again.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }

    /// The pause before the next attempt (and doubles the one after).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

// === impl Snapshot ===

/// Keys under a prefix, each with the revision of its last write and its
/// value.
pub(crate) type Known = BTreeMap<Vec<u8>, (i64, Vec<u8>)>;

/// Every key under a prefix at one revision.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The store revision the read was served at.
    pub(crate) revision: i64,
    pub(crate) keys: Known,
}

impl Snapshot {
    /// The keys, oldest write first.
    pub(crate) fn by_revision(&self) -> Vec<(&Vec<u8>, i64, &Vec<u8>)> {
        let mut kvs: Vec<_> = self.keys.iter().map(|(k, (r, v))| (k, *r, v)).collect();
        kvs.sort_by_key(|(_, r, _)| *r);
        kvs
    }
}

/// Reads every key under `prefix`.
pub(crate) async fn list(
    client: &Client,
    prefix: &[u8],
    timeout: Duration,
) -> Result<Snapshot, CallError> {
    let mut kv = client.kv_client();
    let resp = timed(
        timeout,
        kv.get(prefix.to_vec(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let keys = resp
        .kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), (kv.mod_revision(), kv.value().to_vec())))
        .collect();
    Ok(Snapshot { revision, keys })
}

// === impl Resume ===

/// One change to one key under the watched prefix.
#[derive(Debug)]
pub(crate) struct KeyEvent {
    pub(crate) key: Vec<u8>,
    /// The revision of the change (for a deletion found by a resync after
    /// compaction, the revision of the resync's read).
    pub(crate) revision: i64,
    /// The new value; `None` for a deletion.
    pub(crate) value: Option<Vec<u8>>,
    /// The value before, if the key was known.
    pub(crate) prev: Option<Vec<u8>>,
}

/// Where a [`Resume`] watch delivers its events.
pub(crate) trait Sink: Send {
    /// Delivers `event`; `false` when the receiver is gone.
    fn send(&mut self, event: KeyEvent) -> bool;

    /// Resolves when the receiver is gone.
    fn closed(&self) -> impl Future<Output = ()> + Send + '_;
}

/// A prefix watch that survives disconnects: it resumes from the last
/// revision it delivered + 1, so no event is missed or repeated; when etcd
/// has compacted that revision away it re-reads the prefix and delivers the
/// difference against what it knew, then watches on.
pub(crate) struct Resume {
    pub(crate) client: Client,
    pub(crate) prefix: Vec<u8>,
    /// Every key under the prefix as of `last`.
    pub(crate) known: Known,
    /// The revision everything up to which has been delivered.
    pub(crate) last: i64,
    pub(crate) backoff: Backoff,
    pub(crate) timeout: Duration,
    /// The owner's name, for tracing.
    pub(crate) name: String,
    /// Ends the watch when the owning registry or store is dropped.
    pub(crate) shutdown: watch::Receiver<()>,
}

impl fmt::Debug for Resume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resume")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("last", &self.last)
            .field("known", &self.known.len())
            .finish_non_exhaustive()
    }
}

impl Resume {
    /// Starts at `snapshot`: changes after its revision are delivered.
    pub(crate) fn from_snapshot(
        client: Client,
        prefix: Vec<u8>,
        snapshot: Snapshot,
        backoff: Backoff,
        timeout: Duration,
        name: String,
        shutdown: watch::Receiver<()>,
    ) -> Self {
        Self {
            client,
            prefix,
            known: snapshot.keys,
            last: snapshot.revision,
            backoff,
            timeout,
            name,
            shutdown,
        }
    }

    /// Delivers every change to `sink` until the sink's receiver or the
    /// owner is gone.
    pub(crate) async fn run<S: Sink>(mut self, mut sink: S) {
        let mut shutdown = self.shutdown.clone();
        let prefix = String::from_utf8_lossy(&self.prefix).into_owned();
        loop {
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(self.last + 1);
            let mut watch_client = self.client.watch_client();
            let attempt = tokio::select! {
                r = timed(self.timeout, watch_client.watch(self.prefix.clone(), Some(options))) => r,
                () = sink.closed() => return,
                _ = shutdown.changed() => return,
            };
            match attempt {
                Ok(mut stream) => loop {
                    let message = tokio::select! {
                        m = stream.message() => m,
                        () = sink.closed() => return,
                        _ = shutdown.changed() => return,
                    };
                    match message {
                        Ok(Some(resp)) if resp.compact_revision() > 0 => {
                            tracing::warn!(name = %self.name, %prefix, from = self.last + 1, compacted = resp.compact_revision(), "watch revision compacted: re-reading the prefix");
                            match self.resync(&mut sink).await {
                                Ok(true) => self.backoff.reset(),
                                Ok(false) => return,
                                Err(error) => {
                                    tracing::warn!(name = %self.name, %prefix, %error, "resync failed");
                                }
                            }
                            break;
                        }
                        Ok(Some(resp)) if resp.canceled() => {
                            tracing::warn!(name = %self.name, %prefix, reason = resp.cancel_reason(), "watch canceled by etcd");
                            break;
                        }
                        Ok(Some(resp)) => {
                            self.backoff.reset();
                            for event in resp.events() {
                                if !self.apply(event, &mut sink) {
                                    return;
                                }
                            }
                        }
                        Ok(None) => {
                            tracing::warn!(name = %self.name, %prefix, last = self.last, "watch stream ended: resuming");
                            break;
                        }
                        Err(error) => {
                            tracing::warn!(name = %self.name, %prefix, last = self.last, %error, "watch stream failed: resuming");
                            break;
                        }
                    }
                },
                Err(error) => {
                    tracing::warn!(name = %self.name, %prefix, last = self.last, %error, "watch could not be opened");
                }
            }
            let delay = self.backoff.next_delay();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = sink.closed() => return,
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Applies one etcd event; `false` when the sink is gone.
    fn apply<S: Sink>(&mut self, event: &etcd_client::Event, sink: &mut S) -> bool {
        let Some(kv) = event.kv() else {
            return true;
        };
        let key = kv.key().to_vec();
        let revision = kv.mod_revision();
        self.last = self.last.max(revision);
        let out = match event.event_type() {
            EventType::Put => {
                let value = kv.value().to_vec();
                let prev = self
                    .known
                    .insert(key.clone(), (revision, value.clone()))
                    .map(|(_, v)| v);
                KeyEvent {
                    key,
                    revision,
                    value: Some(value),
                    prev,
                }
            }
            EventType::Delete => match self.known.remove(&key) {
                Some((_, prev)) => KeyEvent {
                    key,
                    revision,
                    value: None,
                    prev: Some(prev),
                },
                None => return true,
            },
        };
        sink.send(out)
    }

    /// Re-reads the prefix and delivers the difference against `known`:
    /// writes at their own revisions (oldest first), then deletions at the
    /// read's revision. `Ok(false)` when the sink is gone.
    async fn resync<S: Sink>(&mut self, sink: &mut S) -> Result<bool, CallError> {
        let snapshot = list(&self.client, &self.prefix, self.timeout).await?;
        for (key, revision, value) in snapshot.by_revision() {
            if self.known.get(key).map(|(r, _)| *r) == Some(revision) {
                continue;
            }
            let prev = self
                .known
                .insert(key.clone(), (revision, value.clone()))
                .map(|(_, v)| v);
            let event = KeyEvent {
                key: key.clone(),
                revision,
                value: Some(value.clone()),
                prev,
            };
            if !sink.send(event) {
                return Ok(false);
            }
        }
        let gone: Vec<Vec<u8>> = self
            .known
            .keys()
            .filter(|k| !snapshot.keys.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            let prev = self.known.remove(&key).map(|(_, v)| v);
            let event = KeyEvent {
                key,
                revision: snapshot.revision,
                value: None,
                prev,
            };
            if !sink.send(event) {
                return Ok(false);
            }
        }
        self.last = snapshot.revision;
        Ok(true)
    }
}

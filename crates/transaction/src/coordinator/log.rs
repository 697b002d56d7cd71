//! The coordinator's handle on one transaction's log entry: the record as
//! last written, and writes that wait out an unreachable store (bounded by
//! the lease) and renew the lease as they go.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use tokio::time::{Instant, sleep};

use super::Inner;
use crate::model::{TxRecord, now_ms};

/// The record's logged deadline (wall clock, shared by every coordinator)
/// as a point on tokio's clock, if it has one.
pub(crate) fn deadline_of(record: &TxRecord) -> Option<Instant> {
    record
        .deadline
        .map(|d| Instant::now() + std::time::Duration::from_millis(d.saturating_sub(now_ms())))
}
use crate::store::{StoreError, Write};

/// Why a run stopped before a terminal state. The transaction stays in the
/// log as last written; recovery drives it on.
#[derive(Debug)]
pub(crate) enum Halt {
    /// Another coordinator wrote it (version conflict) or holds its lease.
    Lost(String),
    /// The store stayed unreachable longer than the lease.
    StoreDown(String),
}

impl Halt {
    pub(crate) fn reason(&self) -> String {
        match self {
            Self::Lost(r) => format!("lost to another coordinator: {r}"),
            Self::StoreDown(r) => {
                format!("transaction log unreachable for longer than the lease: {r}")
            }
        }
    }
}

/// The record as last written, shared with the readers of a run: see
/// [`TxLog::published`].
pub(crate) type Published = Arc<std::sync::Mutex<Arc<TxRecord>>>;

/// A clone of the record `published` holds.
pub(crate) fn read(published: &std::sync::Mutex<Arc<TxRecord>>) -> TxRecord {
    (*shared(published)).clone()
}

/// The record `published` holds, shared (no copy).
pub(crate) fn shared(published: &std::sync::Mutex<Arc<TxRecord>>) -> Arc<TxRecord> {
    Arc::clone(
        &published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

/// One transaction as this coordinator drives it.
#[derive(Debug)]
pub(crate) struct TxLog<'c> {
    inner: &'c Inner,
    pub(crate) record: TxRecord,
    renewed: Option<Instant>,
    /// A copy of `record` as last written, readable without this log's
    /// (async) lock: a reader that awaited that lock while the futures
    /// queued for it are not being polled would wait forever.
    published: Published,
}

impl<'c> TxLog<'c> {
    /// `record` as loaded or created, leased to this coordinator just now.
    pub(crate) fn new(inner: &'c Inner, record: TxRecord) -> Self {
        Self {
            inner,
            published: Arc::new(std::sync::Mutex::new(Arc::new(record.clone()))),
            record,
            renewed: Some(Instant::now()),
        }
    }

    /// The record as last written, shared: read it with [`read`] or
    /// [`shared`], never awaiting anything.
    pub(crate) fn published(&self) -> Published {
        Arc::clone(&self.published)
    }

    /// Applies `write` to the log (fenced by the version last written) and
    /// to the record. While the store is unreachable it retries with the
    /// coordinator's backoff, for at most the lease; a version conflict or
    /// a lease held by someone else stops the run.
    pub(crate) async fn write(&mut self, write: Write) -> Result<(), Halt> {
        let inner = self.inner;
        let lease = inner.config.lease;
        let id = self.record.id.clone();
        if self.renewed.is_none_or(|t| t.elapsed() >= lease / 3) {
            match inner.store.renew(&id, &inner.owner, lease).await {
                Ok(false) => {
                    return Err(Halt::Lost(format!(
                        "the lease on {id} is held by another coordinator"
                    )));
                }
                Ok(true) => self.renewed = Some(Instant::now()),
                // the commit below meets the same store and says what to do
                Err(_) => {}
            }
        }
        let started = Instant::now();
        let mut retry = 0;
        let mut previous = None;
        loop {
            match inner
                .store
                .commit(&id, self.record.version, write.clone())
                .await
            {
                Ok(version) => {
                    write.apply_to(&mut self.record);
                    self.record.version = version;
                    self.record.updated_at = now_ms();
                    let published = Arc::new(self.record.clone());
                    *self
                        .published
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = published;
                    return Ok(());
                }
                Err(StoreError::Unavailable(e)) => {
                    let waited = started.elapsed();
                    if waited >= lease {
                        tracing::error!(name = %inner.config.name, tx = %id, error = %e, "transaction log unreachable for longer than the lease; stopping this run");
                        return Err(Halt::StoreDown(e.to_string()));
                    }
                    retry += 1;
                    let delay = inner.delay(retry, previous).min(lease - waited);
                    previous = Some(delay);
                    tracing::warn!(name = %inner.config.name, tx = %id, error = %e, ?delay, "transaction log unreachable; pausing the run");
                    sleep(delay).await;
                    // our lease may have run out meanwhile: renew before the next write
                    self.renewed = None;
                }
                Err(e) => return Err(Halt::Lost(e.to_string())),
            }
        }
    }
}

/// A set of futures run concurrently inside the caller's future (nothing is
/// spawned: dropping the caller drops them all, as a crash would).
pub(crate) type Pending<'a, T> = Vec<Pin<Box<dyn Future<Output = T> + Send + 'a>>>;

/// Waits for the first of `set` to finish, removes it and returns its
/// output. Pends forever on an empty set: check first.
pub(crate) async fn next_done<T>(set: &mut Pending<'_, T>) -> T {
    std::future::poll_fn(|cx| {
        for i in 0..set.len() {
            if let Poll::Ready(out) = set[i].as_mut().poll(cx) {
                drop(set.swap_remove(i));
                return Poll::Ready(out);
            }
        }
        Poll::Pending
    })
    .await
}

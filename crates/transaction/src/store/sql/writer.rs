//! Group commit: one task applies queued `create`/`commit` writes in
//! batches, each batch in one database transaction (one fsync on SQLite)
//! of a few multi-row statements ([`batch`](super::batch)), each write
//! with its own result.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Connection};
use tokio::sync::{mpsc, oneshot};

use super::batch::{self, Op};
use super::config::Dialect;
use super::{Shared, int};
use crate::model::now_ms;
use crate::store::StoreError;

pub(super) struct Job {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// Counts of what the writer did, shared with the store.
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) batches: AtomicU64,
    pub(super) writes: AtomicU64,
}

/// Where a batch failed.
enum Failure {
    /// Beginning or committing the transaction (or losing the connection):
    /// every write in the batch failed with it.
    Batch(sqlx::Error),
    /// One write's statement was refused by the database: the others may
    /// be fine on their own.
    Statement(sqlx::Error),
}

pub(super) struct Writer {
    pub(super) pool: AnyPool,
    pub(super) dialect: Dialect,
    pub(super) max_batch: usize,
    /// Keep a connection between batches (not with a pool of one, which
    /// the store's reads need too).
    pub(super) keep_connection: bool,
    pub(super) counts: Arc<Counts>,
    pub(super) metrics: super::Metrics,
}

impl Writer {
    /// Runs until every sender is dropped, then finishes the queue.
    ///
    /// The writer keeps one connection of the pool between batches (no
    /// acquire, no liveness ping, its prepared statements at hand), unless
    /// the pool has only one; it gives it back when the pool closes, and
    /// drops it after a failure that may have broken it.
    pub(super) async fn run(self, mut queue: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut conn = None;
        loop {
            let job = tokio::select! {
                job = queue.recv() => job,
                () = self.pool.close_event(), if conn.is_some() => {
                    conn = None;
                    continue;
                }
            };
            let Some(job) = job else { break };
            batch.push(job);
            // Let writers that are ready enqueue before the batch closes.
            tokio::task::yield_now().await;
            while batch.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.apply(&mut conn, &mut batch).await;
            if !self.keep_connection {
                conn = None;
            }
        }
    }

    async fn apply(&self, conn: &mut Option<PoolConnection<Any>>, batch: &mut Vec<Job>) {
        let n = batch.len() as u64;
        let ops: Vec<&Op> = batch.iter().map(|j| &j.op).collect();
        let results = match self.transaction(conn, &ops).await {
            Ok(results) => {
                self.count(1, n);
                results
            }
            Err(Failure::Statement(e)) if ops.len() > 1 => {
                // One write's statement failed and took the transaction with
                // it: apply each write on its own so only that one fails.
                tracing::warn!(store = %self.metrics.name, error = %e, writes = n, "transaction log batch refused, writing one by one");
                let mut results = Vec::with_capacity(ops.len());
                for op in &ops {
                    results.push(
                        match self.transaction(conn, std::slice::from_ref(op)).await {
                            Ok(mut r) => r.pop().unwrap_or_else(|| Err(lost())),
                            Err(Failure::Statement(e) | Failure::Batch(e)) => {
                                Err(StoreError::Unavailable(Box::new(Shared::from(e))))
                            }
                        },
                    );
                }
                self.count(n, n);
                results
            }
            Err(Failure::Statement(e) | Failure::Batch(e)) => {
                tracing::warn!(store = %self.metrics.name, error = %e, writes = n, "transaction log write failed");
                let e = Shared::from(e);
                ops.iter()
                    .map(|_| Err(StoreError::Unavailable(Box::new(e.clone()))))
                    .collect()
            }
        };
        for (job, result) in batch.drain(..).zip(results) {
            // The caller may have gone (its future dropped): nothing to tell.
            let _ = job.reply.send(result);
        }
    }

    fn count(&self, batches: u64, writes: u64) {
        self.counts.batches.fetch_add(batches, Ordering::Relaxed);
        self.counts.writes.fetch_add(writes, Ordering::Relaxed);
        self.metrics.batches.increment(batches);
        self.metrics.writes.increment(writes);
        self.metrics
            .batch_size
            .record(writes as f64 / batches as f64);
    }

    /// Applies `ops` in one transaction on `conn` (taken from the pool if
    /// `None`; dropped if the batch failed as a whole). `Ok` holds each
    /// write's own result: a conflict or an existing id fails that write
    /// alone.
    async fn transaction(
        &self,
        conn: &mut Option<PoolConnection<Any>>,
        ops: &[&Op],
    ) -> Result<Vec<Result<u64, StoreError>>, Failure> {
        let result = self.transaction_on(conn, ops).await;
        if let Err(Failure::Batch(_)) = result {
            *conn = None;
        }
        result
    }

    async fn transaction_on(
        &self,
        conn: &mut Option<PoolConnection<Any>>,
        ops: &[&Op],
    ) -> Result<Vec<Result<u64, StoreError>>, Failure> {
        let conn = match conn {
            Some(conn) => conn,
            None => conn.insert(self.pool.acquire().await.map_err(Failure::Batch)?),
        };
        let begin = match self.dialect {
            // Take the write lock now, so a busy file waits (busy_timeout)
            // instead of failing when a read would upgrade.
            Dialect::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => conn.begin().await,
        };
        let mut tx = begin.map_err(Failure::Batch)?;
        let results = batch::apply(&mut tx, self.dialect, ops, int(now_ms()))
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(_) => Failure::Statement(e),
                e => Failure::Batch(e),
            })?;
        tx.commit().await.map_err(Failure::Batch)?;
        Ok(results)
    }
}

pub(super) fn lost() -> StoreError {
    StoreError::Unavailable("the transaction log writer lost a result".into())
}

//! Group commit: one task applies queued `create`/`commit` writes in
//! batches, each batch in one database transaction (one fsync on SQLite),
//! each write with its own result.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::config::Dialect;
use super::{Shared, int};
use crate::model::{BranchRecord, TxId, TxRecord, now_ms};
use crate::store::{StoreError, Write};

/// A write waiting for the writer.
pub(super) enum Op {
    Create {
        tx: TxRecord,
        owner: String,
        lease_until: u64,
    },
    Commit {
        id: TxId,
        expected: u64,
        write: Write,
    },
}

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
    pub(super) counts: Arc<Counts>,
    pub(super) metrics: super::Metrics,
}

impl Writer {
    /// Runs until every sender is dropped, then finishes the queue.
    ///
    /// The writer keeps one connection of the pool between batches (no
    /// acquire, no liveness ping, its prepared statements at hand); it gives
    /// it back when the pool closes, and drops it after a failure that may
    /// have broken it.
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
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let result = match op {
                Op::Create {
                    tx: record,
                    owner,
                    lease_until,
                } => create(&mut tx, record, owner, *lease_until).await,
                Op::Commit {
                    id,
                    expected,
                    write,
                } => commit(&mut tx, id, *expected, write).await,
            };
            results.push(result.map_err(|e| match e {
                sqlx::Error::Database(_) => Failure::Statement(e),
                e => Failure::Batch(e),
            })?);
        }
        tx.commit().await.map_err(Failure::Batch)?;
        Ok(results)
    }
}

fn lost() -> StoreError {
    StoreError::Unavailable("the transaction log writer lost a result".into())
}

async fn create(
    conn: &mut AnyConnection,
    tx: &TxRecord,
    owner: &str,
    lease_until: u64,
) -> Result<Result<u64, StoreError>, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO rampart_tx (id, protocol, state, decision, input, plan, reason, \
         created_at, updated_at, deadline, version, lease_owner, lease_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $12) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(tx.id.as_str())
    .bind(tx.protocol.as_str())
    .bind(tx.state.as_str())
    .bind(tx.decision.map(super::decision_str))
    .bind(tx.input.to_string())
    .bind(tx.plan.to_string())
    .bind(tx.reason.as_deref())
    .bind(int(tx.created_at))
    .bind(int(tx.updated_at))
    .bind(tx.deadline.map(int))
    .bind(owner)
    .bind(int(lease_until))
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(Err(StoreError::Exists(tx.id.clone())));
    }
    for branch in &tx.branches {
        upsert(conn, &tx.id, branch).await?;
    }
    Ok(Ok(1))
}

async fn commit(
    conn: &mut AnyConnection,
    id: &TxId,
    expected: u64,
    write: &Write,
) -> Result<Result<u64, StoreError>, sqlx::Error> {
    let update = write.tx.as_ref();
    let state = update.and_then(|u| u.state).map(|s| s.as_str());
    let decision = update.and_then(|u| u.decision).map(super::decision_str);
    let reason = update.and_then(|u| u.reason.as_ref());
    let updated = sqlx::query(
        "UPDATE rampart_tx SET state = COALESCE($1, state), \
         decision = COALESCE(decision, $2), \
         reason = CASE WHEN $3 THEN $4 ELSE reason END, \
         updated_at = $5, version = version + 1 \
         WHERE id = $6 AND version = $7",
    )
    .bind(state)
    .bind(decision)
    .bind(reason.is_some())
    .bind(reason.and_then(|r| r.as_deref()))
    .bind(int(now_ms()))
    .bind(id.as_str())
    .bind(int(expected))
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 0 {
        let found = sqlx::query("SELECT version FROM rampart_tx WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        return Ok(Err(match found {
            None => StoreError::NotFound(id.clone()),
            Some(row) => StoreError::Conflict {
                id: id.clone(),
                expected,
                found: u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0),
            },
        }));
    }
    for branch in &write.branches {
        upsert(conn, id, branch).await?;
    }
    Ok(Ok(expected + 1))
}

/// Inserts `branch`, or replaces the record of its `(branch, op)`, keeping
/// the order in which each pair was first logged (`seq`).
async fn upsert(
    conn: &mut AnyConnection,
    id: &TxId,
    branch: &BranchRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO rampart_tx_branch (tx_id, branch, op, seq, state, request, output, \
         error, attempts, updated_at) \
         VALUES ($1, $2, $3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM rampart_tx_branch WHERE tx_id = $1), \
         $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (tx_id, branch, op) DO UPDATE SET state = excluded.state, \
         request = excluded.request, output = excluded.output, error = excluded.error, \
         attempts = excluded.attempts, updated_at = excluded.updated_at",
    )
    .bind(id.as_str())
    .bind(branch.branch.as_str())
    .bind(branch.op.as_str())
    .bind(branch.state.as_str())
    .bind(branch.request.to_string())
    .bind(branch.output.as_ref().map(|o| o.to_string()))
    .bind(branch.error.as_deref())
    .bind(i64::from(branch.attempts))
    .bind(int(branch.updated_at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

//! [`SqlTxStore`]: the durable log on SQLite (a file: the embedded
//! default) or PostgreSQL (several coordinators sharing one store), one
//! sqlx codebase with per-engine SQL where the engines differ.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use rampart_transaction::model::{Protocol, TxId, TxRecord, TxState, now_ms};
//! use rampart_transaction::store::{SqlStoreConfig, TxStore, TxUpdate, Write};
//! use std::time::Duration;
//!
//! # let dir = std::env::temp_dir().join(format!("rampart-doc-{}", TxId::generate()));
//! # std::fs::create_dir_all(&dir)?;
//! # let path = dir.join("tx.db");
//! let store = SqlStoreConfig::new(format!("sqlite://{}", path.display()))
//!     .connect()
//!     .await?;
//! let now = now_ms();
//! let tx = TxRecord {
//!     id: TxId::new("order-42")?,
//!     protocol: Protocol::Saga,
//!     state: TxState::Running,
//!     decision: None,
//!     input: serde_json::json!({"sku": "A-1"}),
//!     plan: serde_json::json!([]),
//!     reason: None,
//!     created_at: now,
//!     updated_at: now,
//!     deadline: None,
//!     version: 1,
//!     branches: vec![],
//! };
//! store.create(&tx, "coordinator-1", Duration::from_secs(30)).await?;
//! let done = Write {
//!     tx: Some(TxUpdate { state: Some(TxState::Committed), ..TxUpdate::default() }),
//!     branches: vec![],
//! };
//! assert_eq!(store.commit(&tx.id, 1, done).await?, 2);
//! assert_eq!(store.load(&tx.id).await?.unwrap().state, TxState::Committed);
//! # store.close().await;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Engines
//!
//! - SQLite: the file is created if missing and opened in WAL mode with
//!   `synchronous = FULL` (a write that returned is on disk) and a busy
//!   timeout; writes take the file's write lock up front
//!   (`BEGIN IMMEDIATE`).
//! - PostgreSQL: everything lives in the configured schema (created if
//!   missing); [`TxStore::claim`] uses `FOR UPDATE SKIP LOCKED`, so
//!   coordinators claiming at once never get the same transaction.
//!
//! The schema is created and upgraded by migrations shipped with the
//! crate (`migrations/log/`, SQL both engines run), applied in order in one
//! transaction and tracked in `rampart_tx_migrations`. A database at a
//! newer version than this build knows is refused
//! ([`ConnectError::SchemaTooNew`]), never used.
//!
//! # Group commit
//!
//! Concurrent [`create`](TxStore::create) and [`commit`](TxStore::commit)
//! calls queue for one writer task, which applies up to
//! [`max_batch`](SqlStoreConfig::max_batch) of them in one database
//! transaction (on SQLite one fsync per batch instead of one per write)
//! of a few multi-row statements, whatever the number of writes. Each
//! write keeps its own result: a conflicting version or an existing id
//! fails that write alone, and each transaction's writes are applied in
//! queue order. If the database refuses a statement, the batch is rolled
//! back and its writes are applied one by one, so only the offending
//! write fails. [`SqlTxStore::write_stats`] and the
//! metrics [`BATCHES_TOTAL`] and [`WRITES_TOTAL`] count batches and writes.
//!
//! # Under failure
//!
//! - The database unreachable, the pool exhausted past the connect
//!   timeout, a locked SQLite file past the busy timeout, an I/O error:
//!   [`StoreError::Unavailable`]; retry later. A batch whose `COMMIT`
//!   itself failed reports `Unavailable` for each of its writes although
//!   the database may have applied them (the answer was lost): reload
//!   before retrying, as after any in-doubt write.
//! - A row that does not decode (an unknown state, bad JSON, a negative
//!   timestamp): [`StoreError::Corrupt`] naming the transaction; other
//!   transactions are unaffected.
//! - A caller that drops a `commit` future after it was queued does not
//!   stop the write; it may or may not be applied.

mod batch;
mod config;
mod migrate;
mod writer;

pub use config::SqlStoreConfig;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rampart_core::metrics::InstanceLabels;
use rampart_core::{BoxError, ConfigError};
use serde_json::Value;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};
use tokio::sync::{mpsc, oneshot};

use self::batch::{Change, NewTx, Op};
use self::config::Dialect;
use self::writer::{Counts, Job, Writer};
use super::{BoxFuture, StoreError, TxFilter, TxStore, TxSummary, Write};
use crate::model::{
    BranchId, BranchRecord, BranchState, Decision, Op as BranchOp, Protocol, TxId, TxRecord,
    TxState, duration_ms, now_ms,
};

/// Group-commit batches written (labels: `name`).
pub const BATCHES_TOTAL: &str = rampart_core::metric_name!("transaction", "store_batches_total");
/// Writes (`create` and `commit`) applied in those batches (labels: `name`).
pub const WRITES_TOTAL: &str = rampart_core::metric_name!("transaction", "store_writes_total");
/// Writes per group-commit batch (labels: `name`).
pub const BATCH_SIZE: &str = rampart_core::metric_name!("transaction", "store_batch_size");

/// The states recovery drives ([`TxState::is_active`]), as SQL literals.
const ACTIVE: &str = "('running', 'committing', 'aborting')";
/// The terminal states ([`TxState::is_terminal`]), as SQL literals.
const TERMINAL: &str = "('committed', 'aborted', 'resolved')";

/// Why [`SqlTxStore::connect`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The settings were refused; the field is named.
    Config(ConfigError),
    /// The database could not be reached within the connect timeout, or
    /// failed.
    Unavailable(BoxError),
    /// The database's log schema is newer than this build knows: written
    /// by a newer rampart-transaction. It is left untouched.
    SchemaTooNew {
        /// The version found in the database.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A migration failed; nothing of it was applied.
    Migration {
        /// The migration's version.
        version: i64,
        /// What the database said.
        source: BoxError,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "{e}"),
            Self::Unavailable(e) => write!(f, "transaction log unavailable: {e}"),
            Self::SchemaTooNew { found, known } => write!(
                f,
                "transaction log schema is at version {found}, newer than the {known} this build knows"
            ),
            Self::Migration { version, source } => {
                write!(f, "transaction log migration {version} failed: {source}")
            }
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Unavailable(e) | Self::Migration { source: e, .. } => Some(&**e),
            Self::SchemaTooNew { .. } => None,
        }
    }
}

impl From<ConfigError> for ConnectError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

/// What the group-commit writer has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    /// Database transactions written.
    pub batches: u64,
    /// `create` and `commit` writes applied in them.
    pub writes: u64,
}

/// The transaction log in SQLite or PostgreSQL. See the [module docs](self).
///
/// Clones share the pool and the writer; the writer stops when the last
/// clone is dropped (after finishing what is queued).
#[derive(Clone)]
pub struct SqlTxStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: AnyPool,
    dialect: Dialect,
    name: String,
    queue: mpsc::Sender<Job>,
    counts: Arc<Counts>,
}

impl fmt::Debug for SqlTxStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlTxStore")
            .field("name", &self.inner.name)
            .field("dialect", &self.inner.dialect)
            .field("stats", &self.write_stats())
            .finish_non_exhaustive()
    }
}

/// Metric handles of one store.
pub(super) struct Metrics {
    name: String,
    batches: metrics::Counter,
    writes: metrics::Counter,
    batch_size: metrics::Histogram,
}

impl SqlTxStore {
    /// Validates `config`, connects, and brings the schema up to date
    /// (creating the SQLite file and the PostgreSQL schema if missing).
    ///
    /// Fails with [`ConnectError::Config`] for bad settings,
    /// [`ConnectError::Unavailable`] if the database cannot be reached
    /// within the connect timeout, [`ConnectError::SchemaTooNew`] for a
    /// database written by a newer build, and
    /// [`ConnectError::Migration`] if a migration is refused.
    pub async fn connect(config: SqlStoreConfig) -> Result<Self, ConnectError> {
        config.validate()?;
        let dialect = config.dialect()?;
        sqlx::any::install_default_drivers();
        let url = match dialect {
            Dialect::Sqlite if !config.url.contains("mode=") => {
                let sep = if config.url.contains('?') { '&' } else { '?' };
                format!("{}{sep}mode=rwc", config.url)
            }
            _ => config.url.clone(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| ConfigError::new("url", e.to_string()))?;
        let setup: Arc<str> = match dialect {
            Dialect::Sqlite => format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = {}",
                duration_ms(config.busy_timeout)
            )
            .into(),
            Dialect::Postgres => match &config.schema {
                Some(schema) => format!("SET search_path TO \"{schema}\"").into(),
                None => "".into(),
            },
        };
        let pool = AnyPoolOptions::new()
            .max_connections(config.pool_size)
            .acquire_timeout(config.connect_timeout)
            // a local file does not hang up: no liveness ping per acquire
            .test_before_acquire(dialect == Dialect::Postgres)
            .after_connect(move |conn, _| {
                let setup = Arc::clone(&setup);
                Box::pin(async move {
                    if !setup.is_empty() {
                        sqlx::raw_sql(AssertSqlSafe(setup)).execute(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        let migrated = tokio::time::timeout(
            config.connect_timeout,
            migrate::run(&pool, dialect, config.schema.as_deref()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(ConnectError::Unavailable(
                format!(
                    "no answer within the connect timeout ({:?})",
                    config.connect_timeout
                )
                .into(),
            ))
        });
        if let Err(e) = migrated {
            pool.close().await;
            return Err(e);
        }
        let labels = InstanceLabels::new(config.name.clone()).to_vec();
        let metrics = Metrics {
            name: config.name.clone(),
            batches: metrics::counter!(BATCHES_TOTAL, labels.clone()),
            writes: metrics::counter!(WRITES_TOTAL, labels.clone()),
            batch_size: metrics::histogram!(BATCH_SIZE, labels),
        };
        let counts = Arc::new(Counts::default());
        let (queue, jobs) = mpsc::channel(config.max_batch.saturating_mul(4));
        let writer = Writer {
            pool: pool.clone(),
            dialect,
            max_batch: config.max_batch,
            keep_connection: config.pool_size > 1,
            counts: Arc::clone(&counts),
            metrics,
        };
        tokio::spawn(writer.run(jobs));
        tracing::debug!(store = %config.name, ?dialect, "transaction log connected");
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                dialect,
                name: config.name,
                queue,
                counts,
            }),
        })
    }

    /// Batches and writes the group-commit writer has applied.
    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            batches: self.inner.counts.batches.load(Ordering::Relaxed),
            writes: self.inner.counts.writes.load(Ordering::Relaxed),
        }
    }

    /// The log schema's version this build writes (and has brought the
    /// database to).
    pub fn schema_version(&self) -> i64 {
        migrate::SCHEMA_VERSION
    }

    /// Closes the pool, waiting for connections in use to be returned.
    /// Calls made after it fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    async fn write(&self, op: Op) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .queue
            .send(Job { op, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the transaction log writer stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the transaction log writer stopped mid-write".into())
        })?
    }

    async fn load_now(&self, id: &TxId) -> Result<Option<TxRecord>, StoreError> {
        // One statement, so one snapshot: the row and its branches agree.
        let rows = sqlx::query(
            "SELECT t.id, t.protocol, t.state, t.decision, t.input, t.plan, t.reason, \
             t.created_at, t.updated_at, t.deadline, t.version, \
             b.branch, b.op, b.state, b.request, b.output, b.error, b.attempts, b.updated_at \
             FROM rampart_tx t LEFT JOIN rampart_tx_branch b ON b.tx_id = t.id \
             WHERE t.id = $1 ORDER BY b.seq",
        )
        .bind(id.as_str())
        .fetch_all(&self.inner.pool)
        .await
        .map_err(unavailable_err)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let d = Decoder { id, row: first };
        let mut tx = TxRecord {
            id: id.clone(),
            protocol: d.parse(1, "protocol", parse_protocol)?,
            state: d.parse(2, "state", TxState::parse)?,
            decision: d.opt_parse(3, "decision", parse_decision)?,
            input: d.json(4, "input")?,
            plan: d.json(5, "plan")?,
            reason: d.opt_text(6, "reason")?,
            created_at: d.uint(7, "created_at")?,
            updated_at: d.uint(8, "updated_at")?,
            deadline: d.opt_uint(9, "deadline")?,
            version: d.uint(10, "version")?,
            branches: Vec::with_capacity(rows.len()),
        };
        for row in &rows {
            let d = Decoder { id, row };
            let Some(branch) = d.opt_text(11, "branch")? else {
                continue;
            };
            tx.branches.push(BranchRecord {
                branch: BranchId::new(branch).map_err(|e| d.corrupt("branch", e))?,
                op: d.parse(12, "op", BranchOp::parse)?,
                state: d.parse(13, "branch state", BranchState::parse)?,
                request: d.json(14, "request")?,
                output: d
                    .opt_text(15, "output")?
                    .map(|s| serde_json::from_str(&s).map_err(|e| d.corrupt("output", e)))
                    .transpose()?,
                error: d.opt_text(16, "error")?,
                attempts: u32::try_from(d.int(17, "attempts")?)
                    .map_err(|e| d.corrupt("attempts", e))?,
                updated_at: d.uint(18, "branch updated_at")?,
            });
        }
        Ok(Some(tx))
    }

    async fn claim_now(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<TxId>, StoreError> {
        let now = now_ms();
        let (begin, lock) = match self.inner.dialect {
            Dialect::Sqlite => ("BEGIN IMMEDIATE", ""),
            // Rows another coordinator is claiming are skipped, not waited
            // for, and re-checked once it commits: no two get the same.
            Dialect::Postgres => ("BEGIN", " FOR UPDATE SKIP LOCKED"),
        };
        let mut tx = self
            .inner
            .pool
            .begin_with(begin)
            .await
            .map_err(unavailable_err)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "UPDATE rampart_tx SET lease_owner = $1, lease_until = $2 WHERE id IN (\
             SELECT id FROM rampart_tx WHERE state IN {ACTIVE} \
             AND (lease_owner IS NULL OR lease_until <= $3) \
             ORDER BY created_at, id LIMIT $4{lock}) \
             RETURNING id, created_at"
        )))
        .bind(owner)
        .bind(int(now.saturating_add(duration_ms(lease))))
        .bind(int(now))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable_err)?;
        tx.commit().await.map_err(unavailable_err)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let id = row_id(row)?;
            let created_at: i64 = row.try_get(1).map_err(unavailable_err)?;
            claimed.push((created_at, id));
        }
        claimed.sort();
        Ok(claimed.into_iter().map(|(_, id)| id).collect())
    }

    async fn list_now(&self, filter: &TxFilter) -> Result<Vec<TxSummary>, StoreError> {
        let mut sql = String::from(
            "SELECT id, protocol, state, reason, created_at, updated_at FROM rampart_tx WHERE 1 = 1",
        );
        let mut n = 0;
        let mut param = |sql: &mut String, clause: &str| {
            n += 1;
            sql.push_str(&clause.replace('?', &format!("${n}")));
        };
        if !filter.states.is_empty() {
            sql.push_str(" AND state IN (");
            for i in 0..filter.states.len() {
                param(&mut sql, if i == 0 { "?" } else { ", ?" });
            }
            sql.push(')');
        }
        if filter.protocol.is_some() {
            param(&mut sql, " AND protocol = ?");
        }
        if filter.created_before.is_some() {
            param(&mut sql, " AND created_at <= ?");
        }
        sql.push_str(" ORDER BY created_at, id");
        if filter.limit.is_some() {
            param(&mut sql, " LIMIT ?");
        }
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for state in &filter.states {
            query = query.bind(state.as_str());
        }
        if let Some(p) = filter.protocol {
            query = query.bind(p.as_str());
        }
        if let Some(t) = filter.created_before {
            query = query.bind(int(t));
        }
        if let Some(limit) = filter.limit {
            query = query.bind(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let rows = query
            .fetch_all(&self.inner.pool)
            .await
            .map_err(unavailable_err)?;
        rows.iter()
            .map(|row| {
                let id = row_id(row)?;
                let d = Decoder { id: &id, row };
                Ok(TxSummary {
                    protocol: d.parse(1, "protocol", parse_protocol)?,
                    state: d.parse(2, "state", TxState::parse)?,
                    reason: d.opt_text(3, "reason")?,
                    created_at: d.uint(4, "created_at")?,
                    updated_at: d.uint(5, "updated_at")?,
                    id,
                })
            })
            .collect()
    }
}

impl TxStore for SqlTxStore {
    fn create<'a>(
        &'a self,
        tx: &'a TxRecord,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let lease_until = now_ms().saturating_add(duration_ms(lease));
            self.write(Op::Create(NewTx::new(tx, owner, lease_until)))
                .await
                .map(|_| ())
        })
    }

    fn load<'a>(&'a self, id: &'a TxId) -> BoxFuture<'a, Result<Option<TxRecord>, StoreError>> {
        Box::pin(self.load_now(id))
    }

    fn commit<'a>(
        &'a self,
        id: &'a TxId,
        expected_version: u64,
        write: Write,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(self.write(Op::Commit(Change::new(id, expected_version, write))))
    }

    fn claim<'a>(
        &'a self,
        owner: &'a str,
        lease: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<TxId>, StoreError>> {
        Box::pin(self.claim_now(owner, lease, limit))
    }

    fn renew<'a>(
        &'a self,
        id: &'a TxId,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let until = now_ms().saturating_add(duration_ms(lease));
            let done = sqlx::query(
                "UPDATE rampart_tx SET lease_until = $1 WHERE id = $2 AND lease_owner = $3",
            )
            .bind(int(until))
            .bind(id.as_str())
            .bind(owner)
            .execute(&self.inner.pool)
            .await
            .map_err(unavailable_err)?;
            if done.rows_affected() > 0 {
                return Ok(true);
            }
            let exists = sqlx::query("SELECT 1 FROM rampart_tx WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(unavailable_err)?;
            match exists {
                Some(_) => Ok(false),
                None => Err(StoreError::NotFound(id.clone())),
            }
        })
    }

    fn release<'a>(
        &'a self,
        id: &'a TxId,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE rampart_tx SET lease_owner = NULL, lease_until = 0 \
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(id.as_str())
            .bind(owner)
            .execute(&self.inner.pool)
            .await
            .map_err(unavailable_err)?;
            Ok(())
        })
    }

    fn list<'a>(
        &'a self,
        filter: &'a TxFilter,
    ) -> BoxFuture<'a, Result<Vec<TxSummary>, StoreError>> {
        Box::pin(self.list_now(filter))
    }

    fn purge(&self, before: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            // Branch rows go with their transaction (ON DELETE CASCADE).
            let done = sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM rampart_tx WHERE state IN {TERMINAL} AND updated_at < $1"
            )))
            .bind(int(before))
            .execute(&self.inner.pool)
            .await
            .map_err(unavailable_err)?;
            Ok(done.rows_affected())
        })
    }
}

// === decoding ===

/// Reads one row's columns, turning anything that does not decode into
/// [`StoreError::Corrupt`] naming the transaction.
struct Decoder<'r> {
    id: &'r TxId,
    row: &'r AnyRow,
}

impl Decoder<'_> {
    fn corrupt(&self, what: &str, e: impl fmt::Display) -> StoreError {
        StoreError::Corrupt {
            id: self.id.clone(),
            reason: format!("{what}: {e}"),
        }
    }

    fn opt_text(&self, i: usize, what: &str) -> Result<Option<String>, StoreError> {
        self.row.try_get(i).map_err(|e| self.corrupt(what, e))
    }

    fn text(&self, i: usize, what: &str) -> Result<String, StoreError> {
        self.opt_text(i, what)?
            .ok_or_else(|| self.corrupt(what, "missing (NULL)"))
    }

    fn opt_parse<T>(
        &self,
        i: usize,
        what: &str,
        parse: fn(&str) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        self.opt_text(i, what)?
            .map(|s| parse(&s).ok_or_else(|| self.corrupt(what, format!("unknown value {s:?}"))))
            .transpose()
    }

    fn parse<T>(
        &self,
        i: usize,
        what: &str,
        parse: fn(&str) -> Option<T>,
    ) -> Result<T, StoreError> {
        self.opt_parse(i, what, parse)?
            .ok_or_else(|| self.corrupt(what, "missing (NULL)"))
    }

    fn json(&self, i: usize, what: &str) -> Result<Value, StoreError> {
        serde_json::from_str(&self.text(i, what)?).map_err(|e| self.corrupt(what, e))
    }

    fn opt_int(&self, i: usize, what: &str) -> Result<Option<i64>, StoreError> {
        self.row.try_get(i).map_err(|e| self.corrupt(what, e))
    }

    fn int(&self, i: usize, what: &str) -> Result<i64, StoreError> {
        self.opt_int(i, what)?
            .ok_or_else(|| self.corrupt(what, "missing (NULL)"))
    }

    fn opt_uint(&self, i: usize, what: &str) -> Result<Option<u64>, StoreError> {
        self.opt_int(i, what)?
            .map(|v| u64::try_from(v).map_err(|_| self.corrupt(what, format!("negative: {v}"))))
            .transpose()
    }

    fn uint(&self, i: usize, what: &str) -> Result<u64, StoreError> {
        self.opt_uint(i, what)?
            .ok_or_else(|| self.corrupt(what, "missing (NULL)"))
    }
}

/// The id in column 0, taken as stored (a row is named by it even when
/// it breaks [`TxId::new`]'s rules, so that [`StoreError::Corrupt`] can
/// name it).
fn row_id(row: &AnyRow) -> Result<TxId, StoreError> {
    let id: String = row.try_get(0).map_err(unavailable_err)?;
    serde_json::from_value(Value::String(id)).map_err(|e| StoreError::Unavailable(e.into()))
}

fn parse_protocol(s: &str) -> Option<Protocol> {
    [
        Protocol::Saga,
        Protocol::Tcc,
        Protocol::TwoPhase,
        Protocol::ThreePhase,
    ]
    .into_iter()
    .find(|p| p.as_str() == s)
}

pub(super) fn decision_str(d: Decision) -> &'static str {
    match d {
        Decision::Commit => "commit",
        Decision::Abort => "abort",
    }
}

fn parse_decision(s: &str) -> Option<Decision> {
    [Decision::Commit, Decision::Abort]
        .into_iter()
        .find(|d| decision_str(*d) == s)
}

/// `v` for a BIGINT column (saturating: times past year 292 million).
pub(super) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unavailable_err(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(unavailable(e))
}

pub(super) fn unavailable(e: sqlx::Error) -> BoxError {
    Box::new(e)
}

/// A database error reported to every write of a failed batch.
#[derive(Debug, Clone)]
pub(super) struct Shared(Arc<sqlx::Error>);

impl From<sqlx::Error> for Shared {
    fn from(e: sqlx::Error) -> Self {
        Self(Arc::new(e))
    }
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [TxState; 7] = [
        TxState::Running,
        TxState::Committing,
        TxState::Aborting,
        TxState::Committed,
        TxState::Aborted,
        TxState::NeedsIntervention,
        TxState::Resolved,
    ];

    fn literals(pick: fn(TxState) -> bool) -> String {
        let names: Vec<String> = ALL
            .into_iter()
            .filter(|s| pick(*s))
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        format!("({})", names.join(", "))
    }

    #[test]
    fn sql_state_sets_match_the_model() {
        assert_eq!(ACTIVE, literals(TxState::is_active));
        assert_eq!(TERMINAL, literals(TxState::is_terminal));
    }

    #[test]
    fn names_round_trip() {
        for p in [
            Protocol::Saga,
            Protocol::Tcc,
            Protocol::TwoPhase,
            Protocol::ThreePhase,
        ] {
            assert_eq!(parse_protocol(p.as_str()), Some(p));
        }
        for d in [Decision::Commit, Decision::Abort] {
            assert_eq!(parse_decision(decision_str(d)), Some(d));
            // the same names serde gives them
            assert_eq!(serde_json::to_value(d).unwrap(), decision_str(d));
        }
        assert_eq!(parse_protocol("xa"), None);
    }
}

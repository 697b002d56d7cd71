//! The SQL barrier (SQLite and PostgreSQL through sqlx): barrier rows in
//! the participant's own transaction.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use rampart_core::BoxError;
use rampart_core::error::ConfigError;
use serde::Deserialize;
use serde_json::Value;
use sqlx::{Database, Pool, Transaction};

use super::layer::SharedTx;
use super::{BarrierError, Verdict, decode_output, forward_op, observe, skip};
use crate::model::{duration_ms, now_ms};
use crate::participant::BranchCall;
use crate::store::BoxFuture;

/// The SQL engines the barrier runs on: [`sqlx::Sqlite`] (feature
/// `sqlite`) and [`sqlx::Postgres`] (feature `postgres`). Sealed.
pub trait BarrierDb: Database + sealed::Sealed {
    /// The schema statements for `names`, in order.
    #[doc(hidden)]
    fn ddl(names: &Names) -> Vec<String>;

    /// Runs `sql` with the row's key, writer, answer and time bound as
    /// `$1..$6`; whether a row was written.
    #[doc(hidden)]
    fn write<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        row: RowRef<'c>,
    ) -> BoxFuture<'c, Result<bool, sqlx::Error>>;

    /// Reads `(inserted_by, output)` of the row keyed `$1..$3`.
    #[doc(hidden)]
    fn read<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        row: RowRef<'c>,
    ) -> BoxFuture<'c, Result<Option<Stored>, sqlx::Error>>;

    /// Runs `sql` with `$1` bound to `before`; rows affected.
    #[doc(hidden)]
    fn delete_before<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        before: i64,
    ) -> BoxFuture<'c, Result<u64, sqlx::Error>>;

    /// Runs a statement without parameters.
    #[doc(hidden)]
    fn execute<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>>;
}

/// A stored row: the op that wrote it, and the answer (JSON text).
#[doc(hidden)]
pub(crate) type Stored = (String, Option<String>);

mod sealed {
    pub trait Sealed {}
}

/// A barrier row's values, as [`BarrierDb`] binds them.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    tx: &'a str,
    branch: &'a str,
    op: &'a str,
    inserted_by: &'a str,
    output: Option<&'a str>,
    now: i64,
}

/// The configured, quoted names the schema statements use.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Names {
    schema: Option<String>,
    table: String,
    index: String,
}

impl Names {
    fn qualified(&self, name: &str) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{name}"),
            None => name.to_owned(),
        }
    }
}

macro_rules! barrier_db {
    ($feature:literal, $db:ty, $ddl:expr) => {
        #[cfg(feature = $feature)]
        impl sealed::Sealed for $db {}

        #[cfg(feature = $feature)]
        impl BarrierDb for $db {
            fn ddl(names: &Names) -> Vec<String> {
                $ddl(names)
            }

            fn write<'c>(
                conn: &'c mut Self::Connection,
                sql: &'c str,
                row: RowRef<'c>,
            ) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
                Box::pin(async move {
                    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(row.tx)
                        .bind(row.branch)
                        .bind(row.op)
                        .bind(row.inserted_by)
                        .bind(row.output)
                        .bind(row.now)
                        .execute(&mut *conn)
                        .await?;
                    Ok(done.rows_affected() == 1)
                })
            }

            fn read<'c>(
                conn: &'c mut Self::Connection,
                sql: &'c str,
                row: RowRef<'c>,
            ) -> BoxFuture<'c, Result<Option<Stored>, sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query_as::<_, Stored>(sqlx::AssertSqlSafe(sql))
                        .bind(row.tx)
                        .bind(row.branch)
                        .bind(row.op)
                        .fetch_optional(&mut *conn)
                        .await
                })
            }

            fn delete_before<'c>(
                conn: &'c mut Self::Connection,
                sql: &'c str,
                before: i64,
            ) -> BoxFuture<'c, Result<u64, sqlx::Error>> {
                Box::pin(async move {
                    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(before)
                        .execute(&mut *conn)
                        .await?;
                    Ok(done.rows_affected())
                })
            }

            fn execute<'c>(
                conn: &'c mut Self::Connection,
                sql: &'c str,
            ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            }
        }
    };
}

barrier_db!("sqlite", sqlx::Sqlite, |names: &Names| {
    // SQLite qualifies the index's name, never the table it is on
    migration(
        &names.qualified(&names.table),
        &names.qualified(&names.index),
        &names.table,
    )
});

barrier_db!("postgres", sqlx::Postgres, |names: &Names| {
    // One migration at a time per database: concurrent `CREATE ... IF NOT
    // EXISTS` of one name can fail in PostgreSQL.
    let mut ddl = vec!["SELECT pg_advisory_xact_lock(7263482371)".to_owned()];
    if let Some(schema) = &names.schema {
        ddl.push(format!("CREATE SCHEMA IF NOT EXISTS {schema}"));
    }
    // PostgreSQL puts the index in its table's schema
    ddl.extend(migration(
        &names.qualified(&names.table),
        &names.index,
        &names.qualified(&names.table),
    ));
    ddl
});

/// The migration shipped with the crate.
const MIGRATION: &str = include_str!("../../migrations/barrier/0001_barrier.sql");

/// The shipped migration's statements with the names filled in.
fn migration(table: &str, index: &str, index_table: &str) -> Vec<String> {
    let code: String = MIGRATION
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.replace("{index_table}", index_table)
                .replace("{table}", table)
                .replace("{index}", index)
        })
        .collect()
}

/// Where the SQL barrier keeps its rows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlBarrierConfig {
    /// The schema holding the table (PostgreSQL: created by
    /// [`SqlBarrier::migrate`] if missing; SQLite: an attached database's
    /// name). Defaults to none: the connection's default (`search_path`
    /// in PostgreSQL, `main` in SQLite).
    pub schema: Option<String>,
    /// The table's name. Defaults to `rampart_barrier`.
    pub table: String,
}

impl Default for SqlBarrierConfig {
    fn default() -> Self {
        Self {
            schema: None,
            table: "rampart_barrier".to_owned(),
        }
    }
}

impl SqlBarrierConfig {
    /// Sets the schema. Defaults to none.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Sets the table. Defaults to `rampart_barrier`.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// A barrier for engine `DB`. Refused: a schema or table name that is
    /// not a plain identifier (`[A-Za-z_][A-Za-z0-9_]*`, at most 48 bytes,
    /// so the index name derived from it fits PostgreSQL's 63).
    pub fn build<DB: BarrierDb>(&self) -> Result<SqlBarrier<DB>, ConfigError> {
        let schema = match &self.schema {
            Some(s) => Some(identifier("barrier.schema", s)?),
            None => None,
        };
        let table = identifier("barrier.table", &self.table)?;
        let index = format!("\"{}_created_at\"", self.table);
        let names = Names {
            schema,
            table,
            index,
        };
        let t = names.qualified(&names.table);
        let key = "tx_id = $1 AND branch_id = $2 AND op = $3";
        let sql = Statements {
            ddl: DB::ddl(&names),
            insert: format!(
                "INSERT INTO {t} (tx_id, branch_id, op, inserted_by, output, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
            ),
            select: format!("SELECT inserted_by, output FROM {t} WHERE {key}"),
            // $4 and $6 are bound to every write: compare them so that
            // PostgreSQL can type them.
            set_output: format!(
                "UPDATE {t} SET output = $5 WHERE {key} AND inserted_by = $4 AND created_at <= $6"
            ),
            purge: format!("DELETE FROM {t} WHERE created_at < $1"),
        };
        Ok(SqlBarrier {
            sql: Arc::new(sql),
            db: PhantomData,
        })
    }
}

fn identifier(field: &'static str, name: &str) -> Result<String, ConfigError> {
    let mut bytes = name.bytes();
    let plain = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !plain || name.len() > 48 {
        return Err(ConfigError::new(
            field,
            format!(
                "{name:?} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 48 bytes)"
            ),
        ));
    }
    Ok(format!("\"{name}\""))
}

#[derive(Debug)]
struct Statements {
    ddl: Vec<String>,
    insert: String,
    select: String,
    set_output: String,
    purge: String,
}

/// The participant barrier on a SQL database (SQLite or PostgreSQL).
///
/// Its rows live in one table ([`SqlBarrier::migrate`] creates it) and are
/// written in the participant's own transaction, together with the
/// business effect: both commit, or neither does.
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # async fn demo(call: rampart_transaction::participant::BranchCall) -> Result<(), rampart_core::BoxError> {
/// use rampart_transaction::barrier::SqlBarrier;
/// use serde_json::json;
///
/// let pool = sqlx::SqlitePool::connect("sqlite://participant.db?mode=rwc").await?;
/// let barrier = SqlBarrier::<sqlx::Sqlite>::new();
/// barrier.migrate(&pool).await?;
///
/// // In the handler of a branch call: duplicates answer the first call's
/// // answer, an empty compensation answers success, a hanging action a
/// // terminal error; the closure runs only when it should.
/// let answer = barrier
///     .run(&pool, &call, |tx| async move {
///         let mut tx = tx.lock().await;
///         sqlx::query("UPDATE stock SET n = n - 1 WHERE item = 'apple'")
///             .execute(&mut **tx)
///             .await?;
///         Ok::<_, sqlx::Error>(json!({ "reserved": 1 }))
///     })
///     .await?;
/// # let _ = answer; Ok(()) }
/// ```
#[derive(Debug)]
pub struct SqlBarrier<DB> {
    sql: Arc<Statements>,
    db: PhantomData<fn() -> DB>,
}

impl<DB> Clone for SqlBarrier<DB> {
    fn clone(&self) -> Self {
        Self {
            sql: Arc::clone(&self.sql),
            db: PhantomData,
        }
    }
}

impl<DB: BarrierDb> Default for SqlBarrier<DB> {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`SqlBarrier::begin`] found.
enum Begun<DB: Database> {
    /// Run the business logic in this transaction.
    Proceed(Transaction<'static, DB>),
    /// Answer this without running it.
    Answered(Result<Value, BoxError>),
}

impl<DB: BarrierDb> SqlBarrier<DB> {
    /// A barrier on the default table, `rampart_barrier`, in the default
    /// schema.
    pub fn new() -> Self {
        SqlBarrierConfig::default()
            .build()
            .expect("the default barrier names are valid")
    }

    /// Creates the barrier's table and index (and, in PostgreSQL, its
    /// schema) if missing, in one transaction. Idempotent; call it at
    /// start-up.
    pub async fn migrate(&self, pool: &Pool<DB>) -> Result<(), BarrierError> {
        let mut tx = pool.begin().await.map_err(BarrierError::Database)?;
        for statement in &self.sql.ddl {
            DB::execute(&mut tx, statement)
                .await
                .map_err(BarrierError::Database)?;
        }
        tx.commit().await.map_err(BarrierError::Database)
    }

    /// Runs `business` for `call` behind the barrier, in a transaction of
    /// `pool` that also holds the barrier rows.
    ///
    /// `business` gets the open transaction as a [`SharedTx`] (lock it to
    /// run statements) and must not keep it past its answer, or the call
    /// fails with [`BarrierError::TransactionHeld`] and nothing is
    /// committed.
    ///
    /// - [`Verdict::Proceed`]: `business` runs with the open transaction;
    ///   on `Ok` its answer is stored and the transaction committed (the
    ///   answer is returned); on `Err` the transaction (business effect
    ///   and barrier row) is rolled back and the error returned, so a
    ///   retry runs again.
    /// - any other verdict: `business` does not run; the answer is the
    ///   verdict's ([`Verdict::answer`]); only an empty compensation's
    ///   markers are committed.
    ///
    /// A concurrent duplicate waits for the first call's transaction
    /// (PostgreSQL: on the row; SQLite: on the database's write lock, up to
    /// the pool's busy timeout) and then answers as it did.
    pub async fn run<F, Fut, E>(
        &self,
        pool: &Pool<DB>,
        call: &BranchCall,
        business: F,
    ) -> Result<Value, BoxError>
    where
        F: FnOnce(SharedTx<DB>) -> Fut,
        Fut: Future<Output = Result<Value, E>>,
        E: Into<BoxError>,
    {
        let tx = match self.begin(pool, call).await? {
            Begun::Proceed(tx) => tx,
            Begun::Answered(answer) => return answer,
        };
        let shared = SharedTx::new(tx);
        let result = business(shared.clone()).await;
        let Some(tx) = shared.into_inner() else {
            // the last handle's drop rolls it back
            return Err(BarrierError::TransactionHeld.into());
        };
        self.finish(tx, call, result).await
    }

    /// Begins a transaction and decides; answers what does not proceed.
    async fn begin(&self, pool: &Pool<DB>, call: &BranchCall) -> Result<Begun<DB>, BarrierError> {
        let mut tx = pool.begin().await.map_err(BarrierError::Database)?;
        let verdict = self.enter(&mut tx, call).await?;
        if verdict == Verdict::Proceed {
            return Ok(Begun::Proceed(tx));
        }
        if verdict == Verdict::Empty {
            // keep the markers; a duplicate or a hanging action wrote
            // nothing, and `tx` rolls back on drop
            tx.commit().await.map_err(BarrierError::Database)?;
        }
        Ok(Begun::Answered(
            skip(call, &verdict).unwrap_or(Ok(Value::Null)),
        ))
    }

    /// Keeps (commit) or drops (rollback) the business's transaction.
    async fn finish<E: Into<BoxError>>(
        &self,
        mut tx: Transaction<'static, DB>,
        call: &BranchCall,
        result: Result<Value, E>,
    ) -> Result<Value, BoxError> {
        match result {
            Ok(output) => {
                self.record(&mut tx, call, &output).await?;
                tx.commit().await.map_err(BarrierError::Database)?;
                observe(call, "applied");
                Ok(output)
            }
            Err(e) => {
                if let Err(rollback) = tx.rollback().await {
                    // the server rolls back a transaction whose connection is gone
                    tracing::warn!(tx = %call.tx, branch = %call.branch, op = %call.op, error = %rollback, "barrier rollback failed");
                }
                observe(call, "failed");
                Err(e.into())
            }
        }
    }

    /// The barrier's decision for `call`, written in `conn`, which must be
    /// inside a transaction the caller commits only after the business
    /// logic succeeded and [`SqlBarrier::record`] stored its answer (the
    /// low-level form of [`SqlBarrier::run`], for a caller that manages its
    /// own transaction). On [`Verdict::Empty`] the caller must commit; on
    /// a duplicate or hanging verdict nothing was written.
    pub async fn enter(
        &self,
        conn: &mut DB::Connection,
        call: &BranchCall,
    ) -> Result<Verdict, BarrierError> {
        let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
        let op = call.op.as_str();
        let row = |op: &'static str, output: Option<&'static str>| RowRef {
            tx: call.tx.as_str(),
            branch: call.branch.as_str(),
            op,
            inserted_by: call.op.as_str(),
            output,
            now,
        };
        // An undo op first marks its forward op: if that row is new, the
        // forward op never ran (and now never will).
        let empty = match forward_op(call.op) {
            Some(forward) => DB::write(conn, &self.sql.insert, row(forward.as_str(), None))
                .await
                .map_err(BarrierError::Database)?,
            None => false,
        };
        let output = empty.then_some("null");
        if DB::write(conn, &self.sql.insert, row(op, output))
            .await
            .map_err(BarrierError::Database)?
        {
            return Ok(if empty {
                Verdict::Empty
            } else {
                Verdict::Proceed
            });
        }
        let found = DB::read(conn, &self.sql.select, row(op, None))
            .await
            .map_err(BarrierError::Database)?;
        let Some((inserted_by, stored)) = found else {
            return Err(BarrierError::corrupt(
                call,
                "the row conflicted on insert but cannot be read",
            ));
        };
        if inserted_by != op {
            return Ok(Verdict::Hanging);
        }
        decode_output(call, stored.as_deref()).map(Verdict::Duplicate)
    }

    /// Stores `output` as the answer to `call` (after its business logic
    /// succeeded, in the same transaction), so that duplicates answer it.
    pub async fn record(
        &self,
        conn: &mut DB::Connection,
        call: &BranchCall,
        output: &Value,
    ) -> Result<(), BarrierError> {
        let text = output.to_string();
        let row = RowRef {
            tx: call.tx.as_str(),
            branch: call.branch.as_str(),
            op: call.op.as_str(),
            inserted_by: call.op.as_str(),
            output: Some(&text),
            now: i64::MAX,
        };
        DB::write(conn, &self.sql.set_output, row)
            .await
            .map_err(BarrierError::Database)?;
        Ok(())
    }

    /// Deletes the rows older than `age`; how many. Keep rows longer than
    /// any transaction can still send calls (its global timeout plus the
    /// coordinator's retries): a purged marker no longer refuses a hanging
    /// action, and a purged row no longer stops a duplicate.
    pub async fn purge(&self, pool: &Pool<DB>, age: Duration) -> Result<u64, BarrierError> {
        let before = now_ms().saturating_sub(duration_ms(age));
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        let mut conn = pool.acquire().await.map_err(BarrierError::Database)?;
        DB::delete_before(&mut conn, &self.sql.purge, before)
            .await
            .map_err(BarrierError::Database)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_identifiers() {
        let ok = SqlBarrierConfig::default()
            .schema("tenant_1")
            .table("barrier");
        let names = Names {
            schema: Some(identifier("barrier.schema", "tenant_1").unwrap()),
            table: identifier("barrier.table", "barrier").unwrap(),
            index: "\"barrier_created_at\"".to_owned(),
        };
        assert_eq!(names.qualified(&names.table), "\"tenant_1\".\"barrier\"");
        for bad in ["", "1abc", "a-b", "a\"b", "a;drop", &"x".repeat(49)] {
            let e = identifier("barrier.table", bad).unwrap_err();
            assert_eq!(e.field(), "barrier.table");
        }
        assert!(identifier("barrier.table", &"x".repeat(48)).is_ok());
        let _ = ok;
    }

    #[test]
    fn the_shipped_migration_fills_in_the_names() {
        let ddl = migration("\"main\".\"b\"", "\"main\".\"b_created_at\"", "\"b\"");
        assert_eq!(ddl.len(), 2);
        assert!(ddl[0].starts_with("CREATE TABLE IF NOT EXISTS \"main\".\"b\" ("));
        assert_eq!(
            ddl[1],
            "CREATE INDEX IF NOT EXISTS \"main\".\"b_created_at\" ON \"b\" (created_at)"
        );
    }
}

//! The log's schema: migrations shipped with the crate, applied in order
//! in one transaction and tracked in `rampart_tx_migrations`.

use sqlx::{AnyPool, Row};

use super::config::Dialect;
use super::{ConnectError, unavailable};
use crate::model::now_ms;

/// One schema change: its version (1, 2, ...), name, and SQL. The SQL is
/// written to run unchanged on SQLite and PostgreSQL.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, oldest first. Append only: a shipped migration never
/// changes.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "log",
    sql: include_str!("../../../migrations/log/0001_log.sql"),
}];

/// The schema version this build writes.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Brings the schema at `pool` up to [`SCHEMA_VERSION`], creating
/// `schema` first (PostgreSQL). Refuses a database at a newer version.
/// Concurrent callers (several coordinators starting at once) are
/// serialized: SQLite by `BEGIN IMMEDIATE`, PostgreSQL by an advisory lock.
pub(super) async fn run(
    pool: &AnyPool,
    dialect: Dialect,
    schema: Option<&str>,
) -> Result<i64, ConnectError> {
    let mut tx = match dialect {
        Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Dialect::Postgres => pool.begin().await,
    }
    .map_err(|e| ConnectError::Unavailable(unavailable(e)))?;
    if dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(7236001)")
            .execute(&mut *tx)
            .await
            .map_err(|e| ConnectError::Unavailable(unavailable(e)))?;
        if let Some(schema) = schema {
            // `schema` was checked to be a plain identifier.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .execute(&mut *tx)
            .await
            .map_err(|e| ConnectError::Unavailable(unavailable(e)))?;
        }
    }
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS rampart_tx_migrations (\
            version BIGINT NOT NULL PRIMARY KEY, \
            name TEXT NOT NULL, \
            applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| ConnectError::Unavailable(unavailable(e)))?;
    let found: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM rampart_tx_migrations")
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| ConnectError::Unavailable(unavailable(e)))?;
    if found > SCHEMA_VERSION {
        return Err(ConnectError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        let sql = m.sql;
        let failed = |e: sqlx::Error| ConnectError::Migration {
            version: m.version,
            source: e.into(),
        };
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(failed)?;
        sqlx::query(
            "INSERT INTO rampart_tx_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(i64::try_from(now_ms()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "transaction log schema migrated"
        );
    }
    tx.commit()
        .await
        .map_err(|e| ConnectError::Unavailable(unavailable(e)))?;
    Ok(SCHEMA_VERSION)
}

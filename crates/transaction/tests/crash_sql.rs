//! The crash-injection sweeps (tests/common/crash_suite.rs) on the durable
//! stores: a SQLite file and the real PostgreSQL (`RAMPART_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`; start it with
//! `scripts/services.sh`), a fresh file or schema per test. For every N:
//! crash after the Nth durable write or participant call, recover on a new
//! coordinator over the same store, and check exactly one terminal state,
//! all applied or all compensated, nothing applied twice, no action after
//! its compensation; for a saga, a TCC and a 2PC transaction.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::crash_suite::{phased_paths, pivot_path, refusal_path, success_path};
use common::{postgres_store, postgres_url};
use rampart_transaction::model::{Protocol, TxId};
use rampart_transaction::store::{SqlStoreConfig, TxStore};
use sqlx::Connection;

/// A SQLite file of its own, removed with its directory on drop.
struct SqliteFile(PathBuf);

impl Drop for SqliteFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn sqlite(test: &str) -> (Arc<dyn TxStore>, SqliteFile) {
    let dir = std::env::temp_dir().join(format!(
        "rampart-crash-{test}-{}",
        &TxId::generate().as_str()[..12]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("log.db").display());
    let store = SqlStoreConfig::new(url).connect().await.unwrap();
    (Arc::new(store), SqliteFile(dir))
}

/// A PostgreSQL schema of its own, dropped on [`Schema::drop_now`].
struct Schema(String);

impl Schema {
    async fn drop_now(self) {
        let mut conn = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.0
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
}

async fn postgres(test: &str) -> (Arc<dyn TxStore>, Schema) {
    let schema = format!("crash_{test}_{}", &TxId::generate().as_str()[..12]);
    let store = postgres_store(&schema).await;
    (Arc::new(store), Schema(schema))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_success_path() {
    let (store, _file) = sqlite("success").await;
    success_path(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refusal_path() {
    let (store, _file) = sqlite("refusal").await;
    refusal_path(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_pivot_path() {
    let (store, _file) = sqlite("pivot").await;
    pivot_path(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_success_path() {
    let (store, schema) = postgres("success").await;
    success_path(store).await;
    schema.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refusal_path() {
    let (store, schema) = postgres("refusal").await;
    refusal_path(store).await;
    schema.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pivot_path() {
    let (store, schema) = postgres("pivot").await;
    pivot_path(store).await;
    schema.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tcc_paths() {
    let (store, _file) = sqlite("tcc").await;
    phased_paths(store, Protocol::Tcc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tcc_paths() {
    let (store, schema) = postgres("tcc").await;
    phased_paths(store, Protocol::Tcc).await;
    schema.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_phase_paths() {
    let (store, _file) = sqlite("two_phase").await;
    phased_paths(store, Protocol::TwoPhase).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_phase_paths() {
    let (store, schema) = postgres("two_phase").await;
    phased_paths(store, Protocol::TwoPhase).await;
    schema.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_three_phase_paths() {
    let (store, _file) = sqlite("three_phase").await;
    phased_paths(store, Protocol::ThreePhase).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_phase_paths() {
    let (store, schema) = postgres("three_phase").await;
    phased_paths(store, Protocol::ThreePhase).await;
    schema.drop_now().await;
}

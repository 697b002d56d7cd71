//! The SQL participant barrier on real SQLite (a temp file per test) and
//! real PostgreSQL (a schema per test; `RAMPART_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, started by
//! `scripts/services.sh`). The business effect is a row in a `ledger`
//! table written in the barrier's transaction, so the tests see what was
//! really committed.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rampart_core::BoxError;
use rampart_transaction::barrier::{BarrierDb, SqlBarrier};
use rampart_transaction::model::{BranchId, Op, TxId};
use rampart_transaction::participant::{Attempt, BranchCall, BranchError};
use serde_json::{Value, json};

mod common;
use common::unique;

/// A barrier on a fresh database (or schema), with a `ledger` table.
pub(crate) struct Env<DB: BarrierDb> {
    pub(crate) pool: sqlx::Pool<DB>,
    pub(crate) barrier: SqlBarrier<DB>,
    pub(crate) ledger: String,
    /// The SQLite file to remove afterwards.
    file: Option<std::path::PathBuf>,
    /// The PostgreSQL schema to drop afterwards.
    schema: Option<String>,
}

impl<DB: BarrierDb> Drop for Env<DB> {
    fn drop(&mut self) {
        if let Some(path) = &self.file {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

impl<DB: BarrierDb> Env<DB> {
    /// Closes the pool (rolling back what a test left open) and drops the
    /// PostgreSQL schema. A test that fails before it leaves its schema
    /// behind, to be looked at.
    async fn finish(mut self) {
        self.pool.close().await;
        if let Some(schema) = self.schema.take() {
            drop_schema(&schema).await;
        }
    }
}

/// Drops a test's PostgreSQL schema and everything in it.
async fn drop_schema(schema: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&common::postgres_url())
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

fn call(tx: &str, branch: &str, op: Op) -> BranchCall {
    BranchCall {
        tx: TxId::new(tx).unwrap(),
        branch: BranchId::new(branch).unwrap(),
        op,
        payload: json!({ "item": "apple" }),
    }
}

fn judge(answer: Result<Value, BoxError>) -> Attempt {
    Attempt::judge(answer)
}

mod sqlite_env {
    use std::time::Duration;

    use rampart_transaction::barrier::SqlBarrierConfig;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    pub(crate) type Db = sqlx::Sqlite;

    pub(crate) type Env = super::Env<Db>;

    pub(crate) async fn env(test: &str) -> Env {
        let path = std::env::temp_dir().join(format!("rampart-barrier-{}.db", super::unique(test)));
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .expect("open the temp SQLite file");
        let barrier = SqlBarrierConfig::default()
            .table("barrier")
            .build()
            .unwrap();
        sqlx::query("CREATE TABLE ledger (tx TEXT NOT NULL, op TEXT NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        Env {
            pool,
            barrier,
            ledger: "ledger".to_owned(),
            file: Some(path),
            schema: None,
        }
    }
}

mod postgres_env {
    use rampart_transaction::barrier::SqlBarrierConfig;
    use sqlx::postgres::PgPoolOptions;

    pub(crate) type Db = sqlx::Postgres;

    pub(crate) type Env = super::Env<Db>;

    pub(crate) async fn env(test: &str) -> Env {
        let url = super::common::postgres_url();
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .connect(&url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {url} is not reachable ({e}): start it with \
                     `scripts/services.sh` or point RAMPART_POSTGRES_URL at a running server"
                )
            });
        let schema = super::unique(test);
        let barrier = SqlBarrierConfig::default().schema(&schema).build().unwrap();
        // the barrier creates its schema
        barrier.migrate(&pool).await.unwrap();
        let ledger = format!("\"{schema}\".ledger");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {ledger} (tx TEXT NOT NULL, op TEXT NOT NULL)"
        )))
        .execute(&pool)
        .await
        .unwrap();
        Env {
            pool,
            barrier,
            ledger,
            file: None,
            schema: Some(schema),
        }
    }
}

/// The suite, once per engine.
macro_rules! suite {
    ($name:ident, $env:ident) => {
        mod $name {
            use super::*;
            use rampart_transaction::barrier::{BarrierLayer, BarrierRequest, SharedTx};
            use tower::{Service, ServiceExt};

            use super::$env::{Db, Env, env};

            /// Barrier set up (migrated twice: it is idempotent).
            async fn ready(test: &str) -> Env {
                let env = env(test).await;
                env.barrier.migrate(&env.pool).await.unwrap();
                env.barrier.migrate(&env.pool).await.unwrap();
                env
            }

            /// Runs `call` behind the barrier; the business writes a ledger
            /// row, counts its runs in `runs` and answers its run number; it
            /// fails after writing when `fail` is set.
            async fn apply(
                env: &Env,
                call: &BranchCall,
                runs: &AtomicUsize,
                fail: bool,
            ) -> Result<Value, BoxError> {
                let ledger = env.ledger.clone();
                env.barrier
                    .run(&env.pool, call, |tx: SharedTx<Db>| async move {
                            let mut tx = tx.lock().await;
                            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                            sqlx::query(sqlx::AssertSqlSafe(format!(
                                "INSERT INTO {ledger} (tx, op) VALUES ($1, $2)"
                            )))
                            .bind(call.tx.as_str())
                            .bind(call.op.as_str())
                            .execute(&mut **tx)
                            .await?;
                            if fail {
                                return Err(BoxError::from("the business failed"));
                            }
                            Ok(json!({ "run": n }))
                    })
                    .await
            }

            async fn ledger(env: &Env, op: Op) -> i64 {
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM {} WHERE op = $1",
                    env.ledger
                )))
                .bind(op.as_str())
                .fetch_one(&env.pool)
                .await
                .unwrap()
            }

            #[tokio::test]
            async fn a_duplicate_action_is_applied_once_and_answers_as_the_first() {
                let env = ready("dup").await;
                let runs = AtomicUsize::new(0);
                let c = call("t-dup", "reserve", Op::Action);
                let first = apply(&env, &c, &runs, false).await.unwrap();
                let second = apply(&env, &c, &runs, false).await.unwrap();
                assert_eq!(first, json!({ "run": 1 }));
                assert_eq!(second, first, "the duplicate answers the stored answer");
                assert_eq!(runs.load(Ordering::SeqCst), 1);
                assert_eq!(ledger(&env, Op::Action).await, 1);
                // the compensation of an action that ran does run, once
                let undo = call("t-dup", "reserve", Op::Compensate);
                let undo_runs = AtomicUsize::new(0);
                apply(&env, &undo, &undo_runs, false).await.unwrap();
                apply(&env, &undo, &undo_runs, false).await.unwrap();
                assert_eq!(undo_runs.load(Ordering::SeqCst), 1);
                assert_eq!(ledger(&env, Op::Compensate).await, 1);
                env.finish().await;
            }

            #[tokio::test]
            async fn an_empty_compensation_skips_the_business_and_answers_success() {
                let env = ready("empty").await;
                let runs = AtomicUsize::new(0);
                let undo = call("t-empty", "reserve", Op::Compensate);
                assert_eq!(apply(&env, &undo, &runs, false).await.unwrap(), Value::Null);
                // its duplicate too
                assert_eq!(apply(&env, &undo, &runs, false).await.unwrap(), Value::Null);
                assert_eq!(runs.load(Ordering::SeqCst), 0);
                assert_eq!(ledger(&env, Op::Compensate).await, 0);
                env.finish().await;
            }

            #[tokio::test]
            async fn a_hanging_action_after_its_undo_is_refused_as_terminal() {
                let env = ready("hang").await;
                let runs = AtomicUsize::new(0);
                for (undo, forward) in [
                    (Op::Compensate, Op::Action),
                    (Op::Cancel, Op::Try),
                    (Op::Rollback, Op::Prepare),
                ] {
                    let branch = format!("b-{forward}");
                    apply(&env, &call("t-hang", &branch, undo), &runs, false)
                        .await
                        .unwrap();
                    let late = apply(&env, &call("t-hang", &branch, forward), &runs, false).await;
                    let err = late.as_ref().unwrap_err();
                    let branch_error = err.downcast_ref::<BranchError>().expect("a BranchError");
                    assert!(branch_error.message().contains("hanging"), "{err}");
                    assert!(matches!(judge(late), Attempt::Terminal(_)));
                    // and again: still refused
                    let again = apply(&env, &call("t-hang", &branch, forward), &runs, false).await;
                    assert!(matches!(judge(again), Attempt::Terminal(_)));
                }
                assert_eq!(runs.load(Ordering::SeqCst), 0, "no business ran");
                assert_eq!(ledger(&env, Op::Action).await, 0);
                env.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_duplicates_apply_once() {
                let env = Arc::new(ready("conc").await);
                let runs = Arc::new(AtomicUsize::new(0));
                let c = call("t-conc", "reserve", Op::Action);
                let tasks: Vec<_> = (0..16)
                    .map(|_| {
                        let (env, runs, c) = (Arc::clone(&env), Arc::clone(&runs), c.clone());
                        // spawned: the barrier's future is Send
                        tokio::spawn(async move { apply(&env, &c, &runs, false).await.unwrap() })
                    })
                    .collect();
                for task in tasks {
                    assert_eq!(task.await.unwrap(), json!({ "run": 1 }));
                }
                assert_eq!(runs.load(Ordering::SeqCst), 1);
                assert_eq!(ledger(&env, Op::Action).await, 1);
                Arc::into_inner(env).expect("the tasks are done").finish().await;
            }

            #[tokio::test]
            async fn a_business_error_rolls_back_the_barrier_row_so_a_retry_runs() {
                let env = ready("retry").await;
                let runs = AtomicUsize::new(0);
                let c = call("t-retry", "reserve", Op::Action);
                let failed = apply(&env, &c, &runs, true).await.unwrap_err();
                assert_eq!(failed.to_string(), "the business failed");
                assert_eq!(ledger(&env, Op::Action).await, 0, "the effect rolled back");
                let retried = apply(&env, &c, &runs, false).await.unwrap();
                assert_eq!(retried, json!({ "run": 2 }));
                assert_eq!(ledger(&env, Op::Action).await, 1);
                // the action is now known to have run: its compensation is not empty
                let undo_runs = AtomicUsize::new(0);
                let undo = call("t-retry", "reserve", Op::Compensate);
                apply(&env, &undo, &undo_runs, false).await.unwrap();
                assert_eq!(undo_runs.load(Ordering::SeqCst), 1);
                env.finish().await;
            }

            #[tokio::test]
            async fn the_layer_commits_on_ok_rolls_back_on_err_and_skips_duplicates() {
                let env = ready("layer").await;
                let runs = Arc::new(AtomicUsize::new(0));
                let fail_next = Arc::new(std::sync::atomic::AtomicBool::new(true));
                let inner = {
                    let (runs, fail_next, ledger) =
                        (Arc::clone(&runs), Arc::clone(&fail_next), env.ledger.clone());
                    tower::service_fn(move |req: BarrierRequest<Db>| {
                        let (runs, fail_next, ledger) =
                            (Arc::clone(&runs), Arc::clone(&fail_next), ledger.clone());
                        async move {
                            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                            let mut tx = req.tx.lock().await;
                            sqlx::query(sqlx::AssertSqlSafe(format!(
                                "INSERT INTO {ledger} (tx, op) VALUES ($1, $2)"
                            )))
                            .bind(req.call.tx.as_str())
                            .bind(req.call.op.as_str())
                            .execute(&mut **tx)
                            .await?;
                            if fail_next.swap(false, Ordering::SeqCst) {
                                return Err(BoxError::from("refused once"));
                            }
                            Ok::<Value, BoxError>(json!({ "run": n }))
                        }
                    })
                };
                let mut svc = rampart_transaction::participant::participant(
                    tower::ServiceBuilder::new()
                        .layer(BarrierLayer::new(env.barrier.clone(), env.pool.clone()))
                        .service(inner),
                );
                let c = call("t-layer", "reserve", Op::Action);
                let err = svc.ready().await.unwrap().call(c.clone()).await.unwrap_err();
                assert_eq!(err.to_string(), "refused once");
                assert_eq!(ledger(&env, Op::Action).await, 0);
                let ok = svc.ready().await.unwrap().call(c.clone()).await.unwrap();
                let dup = svc.ready().await.unwrap().call(c.clone()).await.unwrap();
                assert_eq!(ok, json!({ "run": 2 }));
                assert_eq!(dup, ok);
                assert_eq!(runs.load(Ordering::SeqCst), 2);
                assert_eq!(ledger(&env, Op::Action).await, 1);
                // empty compensation through the layer: the inner service is not called
                let undo = call("t-layer", "other", Op::Compensate);
                assert_eq!(svc.ready().await.unwrap().call(undo).await.unwrap(), Value::Null);
                assert_eq!(runs.load(Ordering::SeqCst), 2);
                env.finish().await;
            }

            #[tokio::test]
            async fn old_rows_are_purged() {
                let env = ready("purge").await;
                let runs = AtomicUsize::new(0);
                apply(&env, &call("t-purge", "b", Op::Action), &runs, false)
                    .await
                    .unwrap();
                let kept = env
                    .barrier
                    .purge(&env.pool, std::time::Duration::from_secs(3600))
                    .await
                    .unwrap();
                assert_eq!(kept, 0, "a fresh row is kept");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                let purged = env
                    .barrier
                    .purge(&env.pool, std::time::Duration::ZERO)
                    .await
                    .unwrap();
                assert_eq!(purged, 1);
                env.finish().await;
            }
        }
    };
}

suite!(sqlite, sqlite_env);
suite!(postgres, postgres_env);

//! `SqlTxStore` on SQLite (a temp file per test): the conformance suite,
//! durability across a reopen, migrations, corrupt rows, group commit.

#![cfg(feature = "sqlite")]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{Fixture, branch, id, tx};
use rampart_transaction::model::{BranchState, Op, TxId, TxState, now_ms};
use rampart_transaction::store::{
    ConnectError, SqlStoreConfig, SqlTxStore, StoreError, TxStore, TxUpdate, Write,
};
use sqlx::Connection;

/// A fresh directory for one test's database file.
fn temp_db(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-tx-{test}-{}", TxId::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("tx.db")
}

fn url(path: &std::path::Path) -> String {
    format!("sqlite://{}", path.display())
}

async fn open(path: &std::path::Path) -> SqlTxStore {
    SqlStoreConfig::new(url(path)).connect().await.unwrap()
}

async fn store(test: &'static str) -> Fixture {
    let path = temp_db(test);
    let store = open(&path).await;
    let mut fixture = Fixture::new(store.clone());
    fixture.cleanup = Some(Box::pin(async move {
        store.close().await;
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }));
    fixture
}

conformance!(super::store);

/// Raw SQL on the file, as an operator (or corruption) would.
async fn raw(path: &std::path::Path, sql: &'static str) {
    let mut conn = sqlx::SqliteConnection::connect(&url(path)).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_a_reopen() {
    let path = temp_db("durable");
    let store = open(&path).await;
    let id = id("durable");
    let mut t = tx(&id, TxState::Running, now_ms());
    t.branches = vec![branch("reserve", Op::Action, BranchState::Sent)];
    store
        .create(&t, "a", Duration::from_secs(60))
        .await
        .unwrap();
    let write = Write {
        tx: Some(TxUpdate {
            state: Some(TxState::Aborting),
            reason: Some(Some("card declined".to_owned())),
            ..TxUpdate::default()
        }),
        branches: vec![branch("reserve", Op::Compensate, BranchState::Sent)],
    };
    store.commit(&id, 1, write).await.unwrap();
    let before = store.load(&id).await.unwrap().unwrap();
    store.close().await;
    drop(store);

    let store = open(&path).await;
    let after = store.load(&id).await.unwrap().expect("still there");
    assert_eq!(after, before);
    assert_eq!(after.version, 2);
    assert_eq!(after.branches.len(), 2);
    // the lease survived too: no one else may claim it yet
    assert!(
        store
            .claim("b", Duration::from_secs(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn migrations_are_idempotent_and_a_newer_schema_is_refused() {
    let path = temp_db("migrate");
    let first = open(&path).await;
    let id = id("kept");
    first
        .create(&tx(&id, TxState::Running, 1), "a", Duration::ZERO)
        .await
        .unwrap();
    first.close().await;
    // reopening applies nothing twice and loses nothing
    let second = open(&path).await;
    assert_eq!(second.schema_version(), 1);
    assert!(second.load(&id).await.unwrap().is_some());
    second.close().await;
    let mut conn = sqlx::SqliteConnection::connect(&url(&path)).await.unwrap();
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, name FROM rampart_tx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(applied, [(1, "log".to_owned())]);
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    conn.close().await.unwrap();

    raw(
        &path,
        "INSERT INTO rampart_tx_migrations (version, name, applied_at) VALUES (99, 'future', 0)",
    )
    .await;
    match SqlStoreConfig::new(url(&path)).connect().await {
        Err(ConnectError::SchemaTooNew { found, known }) => assert_eq!((found, known), (99, 1)),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn a_row_that_does_not_decode_is_corrupt_and_names_its_transaction() {
    let path = temp_db("corrupt");
    let store = open(&path).await;
    let (bad_state, bad_json, fine) = (
        TxId::new("bad-state").unwrap(),
        TxId::new("bad-json").unwrap(),
        TxId::new("fine").unwrap(),
    );
    for id in [&bad_state, &bad_json, &fine] {
        let mut t = tx(id, TxState::Running, 1);
        t.branches = vec![branch("b", Op::Action, BranchState::Sent)];
        store.create(&t, "a", Duration::ZERO).await.unwrap();
    }
    raw(
        &path,
        "UPDATE rampart_tx SET state = 'exploded' WHERE id = 'bad-state'",
    )
    .await;
    raw(
        &path,
        "UPDATE rampart_tx_branch SET request = '{not json' WHERE tx_id = 'bad-json'",
    )
    .await;

    match store.load(&bad_state).await {
        Err(StoreError::Corrupt { id, reason }) => {
            assert_eq!(id, bad_state);
            assert!(
                reason.contains("state") && reason.contains("exploded"),
                "{reason}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    match store.load(&bad_json).await {
        Err(StoreError::Corrupt { id, reason }) => {
            assert_eq!(id, bad_json);
            assert!(reason.contains("request"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // the others are unaffected
    assert!(store.load(&fine).await.unwrap().is_some());
    match store.list(&Default::default()).await {
        Err(StoreError::Corrupt { id, .. }) => assert_eq!(id, bad_state),
        other => panic!("expected Corrupt from list, got {other:?}"),
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn an_unopenable_file_is_unavailable() {
    let started = tokio::time::Instant::now();
    let err = SqlStoreConfig::new("sqlite:///nonexistent-dir-rampart/x/tx.db")
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_transactions_and_keep_their_own_results() {
    let path = temp_db("group");
    let store = Arc::new(open(&path).await);
    let ids: Vec<TxId> = (0..64).map(|i| id(&format!("g{i}"))).collect();
    for id in &ids {
        store
            .create(&tx(id, TxState::Running, 1), "a", Duration::ZERO)
            .await
            .unwrap();
    }
    let before = store.write_stats();
    // two commits per transaction, both expecting version 1: exactly one
    // of each pair wins, whatever batch they land in
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().chain(ids.iter()).enumerate() {
        let (store, id) = (Arc::clone(&store), id.clone());
        tasks.push(tokio::spawn(async move {
            let write = Write {
                tx: None,
                branches: vec![branch(&format!("w{i}"), Op::Action, BranchState::Succeeded)],
            };
            store.commit(&id, 1, write).await
        }));
    }
    let mut won = 0;
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(2) => won += 1,
            Err(StoreError::Conflict {
                expected: 1,
                found: 2,
                ..
            }) => conflicts += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((won, conflicts), (64, 64));
    let stats = store.write_stats();
    let (batches, writes) = (stats.batches - before.batches, stats.writes - before.writes);
    assert_eq!(writes, 128);
    assert!(batches < writes, "{batches} batches for {writes} writes");

    // all durable: reopen and check
    store.close().await;
    drop(store);
    let store = open(&path).await;
    for id in &ids {
        let t = store.load(id).await.unwrap().unwrap();
        assert_eq!(t.version, 2);
        assert_eq!(t.branches.len(), 1, "only the winner's branch");
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_one_connection_serves_reads_between_writes() {
    let path = temp_db("pool-of-one");
    let store = SqlStoreConfig::new(url(&path))
        .pool_size(1)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let id = id("one");
    store
        .create(&tx(&id, TxState::Running, 1), "a", Duration::ZERO)
        .await
        .unwrap();
    for version in 1..4 {
        let write = Write {
            tx: None,
            branches: vec![branch(
                &format!("b{version}"),
                Op::Action,
                BranchState::Sent,
            )],
        };
        assert_eq!(
            store.commit(&id, version, write).await.unwrap(),
            version + 1
        );
        // the writer gave the only connection back
        assert_eq!(store.load(&id).await.unwrap().unwrap().version, version + 1);
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_fails_alone() {
    let path = temp_db("refused");
    let store = Arc::new(open(&path).await);
    let good = id("good");
    store
        .create(&tx(&good, TxState::Running, 1), "a", Duration::ZERO)
        .await
        .unwrap();
    // a trigger refuses writes of one transaction: its statement fails
    raw(
        &path,
        "CREATE TRIGGER refuse BEFORE UPDATE ON rampart_tx WHEN NEW.id = 'poisoned' \
         BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END",
    )
    .await;
    let poisoned = TxId::new("poisoned").unwrap();
    store
        .create(&tx(&poisoned, TxState::Running, 1), "a", Duration::ZERO)
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        store.commit(&poisoned, 1, Write::default()),
        store.commit(&good, 1, Write::default()),
    );
    assert!(matches!(a, Err(StoreError::Unavailable(_))), "{a:?}");
    assert_eq!(b.unwrap(), 2);
    store.close().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

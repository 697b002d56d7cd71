//! `SqlTxStore` on the real PostgreSQL (`RAMPART_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; start it with
//! `scripts/services.sh`), a schema per test: the conformance suite,
//! claims racing across pools, corrupt rows, an unreachable server.

#![cfg(feature = "postgres")]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Fixture, id, postgres_store, postgres_url, tx};
use rampart_transaction::model::{TxId, TxState};
use rampart_transaction::store::{
    ConnectError, SqlStoreConfig, SqlTxStore, StoreError, TxStore, Write,
};
use sqlx::Connection;

/// A schema name unique to this test and run.
fn schema(test: &str) -> String {
    let test: String = test.chars().take(40).collect();
    format!("rt_{test}_{}", &TxId::generate().as_str()[..12])
}

async fn raw(sql: String) {
    let mut conn = sqlx::PgConnection::connect(&postgres_url())
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL unreachable ({e}): start it with scripts/services.sh")
        });
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

async fn drop_schema(schema: &str) {
    raw(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
}

async fn store(test: &'static str) -> Fixture {
    let schema = schema(test);
    let store = postgres_store(&schema).await;
    let mut fixture = Fixture::new(store.clone());
    fixture.cleanup = Some(Box::pin(async move {
        store.close().await;
        drop_schema(&schema).await;
    }));
    fixture
}

conformance!(super::store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_claiming_at_once_get_disjoint_sets_and_take_over_expired_leases() {
    let schema = schema("claim_race");
    let (a, b) = (postgres_store(&schema).await, postgres_store(&schema).await);
    let ids: Vec<TxId> = (0..60).map(|i| id(&format!("race{i}"))).collect();
    for (i, id) in ids.iter().enumerate() {
        a.create(
            &tx(id, TxState::Running, 1_000 + i as u64),
            "creator",
            Duration::ZERO,
        )
        .await
        .unwrap();
    }
    let lease = Duration::from_millis(300);
    let drain = |store: SqlTxStore, owner: &'static str| async move {
        let mut got = Vec::new();
        loop {
            let batch = store.claim(owner, lease, 3).await.unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch);
        }
    };
    let (got_a, got_b) = tokio::join!(
        tokio::spawn(drain(a.clone(), "a")),
        tokio::spawn(drain(b.clone(), "b"))
    );
    let (got_a, got_b) = (got_a.unwrap(), got_b.unwrap());
    let set_a: HashSet<_> = got_a.iter().cloned().collect();
    let set_b: HashSet<_> = got_b.iter().cloned().collect();
    assert_eq!(set_a.len(), got_a.len(), "a got one twice");
    assert_eq!(set_b.len(), got_b.len(), "b got one twice");
    assert!(
        set_a.is_disjoint(&set_b),
        "both claimed {:?}",
        set_a.intersection(&set_b)
    );
    assert_eq!(set_a.len() + set_b.len(), ids.len(), "every one claimed");

    // a's leases run out: b takes over a's share
    assert!(b.claim("b", lease, 100).await.unwrap().is_empty());
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let mut taken: Vec<TxId> = b.claim("b", lease, 100).await.unwrap();
    taken.sort();
    let mut expected: Vec<TxId> = ids.clone();
    expected.sort();
    assert_eq!(taken, expected, "every expired lease taken over");
    assert!(
        !a.renew(&ids[0], "a", lease).await.unwrap(),
        "a lost its lease"
    );

    a.close().await;
    b.close().await;
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_transactions() {
    let schema = schema("group");
    let store = postgres_store(&schema).await;
    let ids: Vec<TxId> = (0..64).map(|i| id(&format!("g{i}"))).collect();
    for id in &ids {
        store
            .create(&tx(id, TxState::Running, 1), "a", Duration::ZERO)
            .await
            .unwrap();
    }
    let before = store.write_stats();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move { store.commit(&id, 1, Write::default()).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 2);
    }
    let stats = store.write_stats();
    let (batches, writes) = (stats.batches - before.batches, stats.writes - before.writes);
    assert_eq!(writes, 64);
    assert!(batches < writes, "{batches} batches for {writes} writes");
    let other = postgres_store(&schema).await; // another pool sees them all
    for id in &ids {
        assert_eq!(other.load(id).await.unwrap().unwrap().version, 2);
    }
    store.close().await;
    other.close().await;
    drop_schema(&schema).await;
}

#[tokio::test]
async fn corrupt_rows_newer_schemas_and_reopen() {
    let schema = schema("corrupt");
    let store = postgres_store(&schema).await;
    let bad = TxId::new(format!("bad-{}", TxId::generate())).unwrap();
    store
        .create(&tx(&bad, TxState::Running, 1), "a", Duration::ZERO)
        .await
        .unwrap();
    raw(format!(
        "UPDATE \"{schema}\".rampart_tx SET input = 'not json {{' WHERE id = '{bad}'"
    ))
    .await;
    match store.load(&bad).await {
        Err(StoreError::Corrupt { id, reason }) => {
            assert_eq!(id, bad);
            assert!(reason.contains("input"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    store.close().await;
    // reopening migrates nothing twice
    let again = postgres_store(&schema).await;
    again.close().await;
    raw(format!(
        "INSERT INTO \"{schema}\".rampart_tx_migrations VALUES (2, 'future', 0)"
    ))
    .await;
    match SqlStoreConfig::new(postgres_url())
        .schema(&schema)
        .connect()
        .await
    {
        Err(ConnectError::SchemaTooNew { found, known }) => assert_eq!((found, known), (2, 1)),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    drop_schema(&schema).await;
}

#[tokio::test]
async fn a_closed_port_fails_within_the_connect_timeout() {
    let started = tokio::time::Instant::now();
    let err = SqlStoreConfig::new("postgres://postgres@127.0.0.1:1/test")
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

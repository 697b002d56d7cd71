//! The Redis participant barrier on the real Redis (`RAMPART_REDIS_URL`,
//! default `redis://127.0.0.1:6379`, started by `scripts/services.sh`),
//! a unique key prefix per test.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rampart_core::BoxError;
use rampart_transaction::barrier::{RedisBarrier, RedisBarrierConfig};
use rampart_transaction::model::{BranchId, Op, TxId};
use rampart_transaction::participant::{Attempt, BranchCall};
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};

mod common;

fn prefix(test: &str) -> String {
    format!("rampart:test:barrier:{}:", common::unique(test))
}

async fn barrier(test: &str, config: RedisBarrierConfig) -> RedisBarrier<MultiplexedConnection> {
    config.prefix(prefix(test)).build(connect().await).unwrap()
}

async fn connect() -> MultiplexedConnection {
    let url =
        std::env::var("RAMPART_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    async {
        redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await
    }
    .await
    .unwrap_or_else(|e| {
        panic!(
            "Redis at {url} is not reachable ({e}): start it with `scripts/services.sh` \
             or point RAMPART_REDIS_URL at a running server"
        )
    })
}

fn call(branch: &str, op: Op) -> BranchCall {
    BranchCall {
        tx: TxId::new("t-1").unwrap(),
        branch: BranchId::new(branch).unwrap(),
        op,
        payload: Value::Null,
    }
}

/// Runs `call`; the business counts its runs and answers its run number,
/// or fails when `fail` is set.
async fn apply(
    barrier: &RedisBarrier<MultiplexedConnection>,
    call: &BranchCall,
    runs: &AtomicUsize,
    fail: bool,
) -> Result<Value, BoxError> {
    barrier
        .run(call, || async {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            if fail {
                return Err(BoxError::from("the business failed"));
            }
            Ok(json!({ "run": n }))
        })
        .await
}

#[tokio::test]
async fn a_duplicate_action_is_applied_once_and_answers_as_the_first() {
    let barrier = barrier("dup", RedisBarrierConfig::default()).await;
    let runs = AtomicUsize::new(0);
    let c = call("reserve", Op::Action);
    let first = apply(&barrier, &c, &runs, false).await.unwrap();
    assert_eq!(first, json!({ "run": 1 }));
    assert_eq!(apply(&barrier, &c, &runs, false).await.unwrap(), first);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // the compensation of an action that ran runs, once
    let undo = call("reserve", Op::Compensate);
    let undo_runs = AtomicUsize::new(0);
    apply(&barrier, &undo, &undo_runs, false).await.unwrap();
    apply(&barrier, &undo, &undo_runs, false).await.unwrap();
    assert_eq!(undo_runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_empty_compensation_skips_the_business_and_a_hanging_action_is_terminal() {
    let barrier = barrier("empty", RedisBarrierConfig::default()).await;
    let runs = AtomicUsize::new(0);
    for (undo, forward) in [
        (Op::Compensate, Op::Action),
        (Op::Cancel, Op::Try),
        (Op::Rollback, Op::Prepare),
    ] {
        let branch = format!("b-{forward}");
        let empty = apply(&barrier, &call(&branch, undo), &runs, false).await;
        assert_eq!(empty.unwrap(), Value::Null);
        let again = apply(&barrier, &call(&branch, undo), &runs, false).await;
        assert_eq!(again.unwrap(), Value::Null);
        let late = apply(&barrier, &call(&branch, forward), &runs, false).await;
        assert!(
            matches!(Attempt::judge(late), Attempt::Terminal(m) if m.contains("hanging")),
            "{forward} after {undo}"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no business ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_apply_once() {
    let barrier = Arc::new(barrier("conc", RedisBarrierConfig::default()).await);
    let runs = Arc::new(AtomicUsize::new(0));
    let c = call("reserve", Op::Action);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (barrier, runs, c) = (Arc::clone(&barrier), Arc::clone(&runs), c.clone());
            tokio::spawn(async move {
                barrier
                    .run(&c, || async {
                        let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                        // long enough for the others to arrive meanwhile
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, BoxError>(json!({ "run": n }))
                    })
                    .await
            })
        })
        .collect();
    let mut busy = 0;
    for task in tasks {
        match Attempt::judge(task.await.unwrap()) {
            Attempt::Success(v) => assert_eq!(v, json!({ "run": 1 })),
            Attempt::Retryable(m) => {
                assert!(m.contains("already running"), "{m}");
                busy += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(busy > 0, "some duplicates arrived while the first ran");
    // after it finished, a duplicate gets its answer
    let late = apply(&barrier, &c, &runs, false).await.unwrap();
    assert_eq!(late, json!({ "run": 1 }));
}

#[tokio::test]
async fn a_business_error_removes_the_marker_so_a_retry_runs() {
    let barrier = barrier("retry", RedisBarrierConfig::default()).await;
    let runs = AtomicUsize::new(0);
    let c = call("reserve", Op::Action);
    let failed = apply(&barrier, &c, &runs, true).await.unwrap_err();
    assert_eq!(failed.to_string(), "the business failed");
    assert_eq!(
        apply(&barrier, &c, &runs, false).await.unwrap(),
        json!({ "run": 2 })
    );
    // the action ran: its compensation is not empty
    let undo_runs = AtomicUsize::new(0);
    apply(
        &barrier,
        &call("reserve", Op::Compensate),
        &undo_runs,
        false,
    )
    .await
    .unwrap();
    assert_eq!(undo_runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_abandoned_call_is_taken_over_after_its_lease() {
    // real Redis time: a short lease
    let config = RedisBarrierConfig::default().lease(Duration::from_millis(200));
    let barrier = Arc::new(barrier("lease", config).await);
    let c = call("reserve", Op::Action);
    // a call that never settles (its task is aborted mid-business, as if the process died)
    let stuck = {
        let (barrier, c) = (Arc::clone(&barrier), c.clone());
        tokio::spawn(async move {
            barrier
                .run(&c, std::future::pending::<Result<Value, BoxError>>)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    stuck.abort();
    let runs = AtomicUsize::new(0);
    let busy = apply(&barrier, &c, &runs, false).await;
    assert!(matches!(Attempt::judge(busy), Attempt::Retryable(_)));
    // the compensation waits for the running action too
    let undo = call("reserve", Op::Compensate);
    let busy = apply(&barrier, &undo, &runs, false).await;
    assert!(matches!(Attempt::judge(busy), Attempt::Retryable(_)));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        apply(&barrier, &c, &runs, false).await.unwrap(),
        json!({ "run": 1 })
    );
}

#[tokio::test]
async fn markers_expire_after_the_ttl() {
    let prefix = prefix("ttl");
    let barrier = RedisBarrierConfig::default()
        .ttl(Duration::from_secs(300))
        .prefix(&prefix)
        .build(connect().await)
        .unwrap();
    let runs = AtomicUsize::new(0);
    apply(&barrier, &call("reserve", Op::Compensate), &runs, false)
        .await
        .unwrap();
    let mut conn = connect().await;
    for op in ["compensate", "action"] {
        let key = format!("{prefix}{{t-1/reserve}}/{op}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((290_000..=300_000).contains(&ttl), "{key}: {ttl}");
    }
}

//! Crash injection on the saga, TCC and 2PC coordinators over the memory
//! store: for
//! every N, crash after the Nth durable write and after the Nth
//! participant call, recover on a new coordinator, and check the log and
//! the participants. The same sweeps run on SQLite and PostgreSQL in
//! tests/crash_sql.rs.

mod common;

use std::sync::Arc;

use common::crash_suite::{harness, phased_paths, pivot_path, refusal_path, saga, success_path};
use rampart_transaction::model::{Protocol, TxState};
use rampart_transaction::store::MemoryTxStore;
use rampart_transaction::testing::{CrashPoint, EffectLedger};
use serde_json::json;

#[tokio::test]
async fn every_crash_point_on_the_success_path_ends_committed_with_each_effect_once() {
    success_path(Arc::new(MemoryTxStore::new())).await;
}

#[tokio::test]
async fn every_crash_point_when_a_later_step_refuses_ends_aborted_and_compensated() {
    refusal_path(Arc::new(MemoryTxStore::new())).await;
}

#[tokio::test]
async fn every_crash_point_with_a_pivot_goes_forward_after_it() {
    pivot_path(Arc::new(MemoryTxStore::new())).await;
}

#[tokio::test]
async fn a_single_run_reports_its_crash_and_the_recovered_state() {
    let ledger = EffectLedger::new();
    let h = harness(Arc::new(MemoryTxStore::new()), &ledger, saga(None));
    let id = rampart_transaction::model::TxId::new("single-run-1").unwrap();
    let run = h
        .run(CrashPoint::AfterCall(2), id.clone(), json!({}))
        .await
        .unwrap();
    assert!(run.crashed);
    assert!(run.first.is_none());
    assert_eq!(run.record.state, TxState::Committed);
    // the second call was applied, then re-sent by recovery
    assert_eq!(ledger.duplicates(&id), 1);
    let never = h
        .run(
            CrashPoint::Never,
            rampart_transaction::model::TxId::new("single-run-2").unwrap(),
            json!({}),
        )
        .await
        .unwrap();
    assert!(!never.crashed);
    assert_eq!(never.first.unwrap().unwrap().state, TxState::Committed);
}

#[tokio::test]
async fn every_crash_point_of_a_tcc_ends_confirmed_or_cancelled_each_effect_once() {
    phased_paths(Arc::new(MemoryTxStore::new()), Protocol::Tcc).await;
}

#[tokio::test]
async fn every_crash_point_of_a_two_phase_commit_ends_committed_or_rolled_back() {
    phased_paths(Arc::new(MemoryTxStore::new()), Protocol::TwoPhase).await;
}

#[tokio::test]
async fn every_crash_point_of_a_three_phase_commit_ends_committed_or_rolled_back() {
    phased_paths(Arc::new(MemoryTxStore::new()), Protocol::ThreePhase).await;
}

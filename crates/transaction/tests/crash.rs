//! Crash injection on the saga, TCC and 2PC coordinators over the memory
//! store: for
//! every N, crash after the Nth durable write and after the Nth
//! participant call, recover on a new coordinator, and check the log and
//! the participants. The same sweeps run on SQLite and PostgreSQL in
//! tests/crash_sql.rs.

mod common;

use std::sync::Arc;

use common::crash_suite::{config, harness, pivot_path, refusal_path, saga, success_path};
use rampart_transaction::model::{Op, TxState};
use rampart_transaction::store::MemoryTxStore;
use rampart_transaction::tcc::{self, Tcc};
use rampart_transaction::testing::{CrashHarness, CrashPoint, EffectLedger, SweepReport};
use rampart_transaction::two_phase::{self, TwoPhase};
use serde_json::{Value, json};

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

fn tcc_harness(ledger: &EffectLedger) -> CrashHarness {
    let tcc = Tcc::builder("crash-tcc")
        .branch(
            tcc::Branch::new("a", "p")
                .request(|input: &Value, _| json!({ "order": input["order"] })),
        )
        .branch(tcc::Branch::new("b", "q").commit_with("p"))
        .branch(tcc::Branch::new("c", "q").request_value(json!("fixed")))
        .build()
        .unwrap();
    CrashHarness::tcc(Arc::new(MemoryTxStore::new()), config(), tcc)
        .participant("p", ledger.participant())
        .participant("q", ledger.participant())
}

fn two_phase_harness(ledger: &EffectLedger) -> CrashHarness {
    let tx = TwoPhase::builder("crash-2pc")
        .branch(two_phase::Branch::new("a", "p"))
        .branch(two_phase::Branch::new("b", "q").undo_with("p"))
        .branch(two_phase::Branch::new("c", "q"))
        .build()
        .unwrap();
    CrashHarness::two_phase(Arc::new(MemoryTxStore::new()), config(), tx)
        .participant("p", ledger.participant())
        .participant("q", ledger.participant())
}

/// The ops applied for the run's transaction, by op.
fn count(ledger: &EffectLedger, run: &rampart_transaction::testing::CrashRun, op: Op) -> usize {
    ledger
        .applied(&run.record.id)
        .iter()
        .filter(|(_, o)| *o == op)
        .count()
}

/// Every crash point of a 3-branch transaction whose phase one succeeds:
/// a crash before the decision is logged aborts (every phase-one call that
/// applied is undone, nothing committed); after it, every branch is
/// committed, each once.
async fn phased_success(harness: CrashHarness, ledger: &EffectLedger, ops: [Op; 3]) -> SweepReport {
    let [first, commit, undo] = ops;
    harness
        .sweep(json!({ "order": 1 }), |run| {
            ledger.check(&run.record)?;
            match run.record.state {
                TxState::Committed => {
                    assert_eq!(count(ledger, run, first), 3, "{:?}", run.point);
                    assert_eq!(count(ledger, run, commit), 3, "{:?}", run.point);
                    assert_eq!(count(ledger, run, undo), 0, "{:?}", run.point);
                }
                _ => {
                    assert!(run.crashed, "{:?}", run.point);
                    assert_eq!(count(ledger, run, commit), 0, "{:?}", run.point);
                    // every applied one undone (checked by the ledger); a call logged
                    // sent that never arrived is undone too (an empty cancel)
                    assert!(
                        count(ledger, run, first) <= count(ledger, run, undo),
                        "{:?}",
                        run.point
                    );
                }
            }
            Ok(())
        })
        .await
        .unwrap()
}

/// Every crash point when branch `b` refuses phase one: aborted, every
/// phase-one call that applied undone, nothing committed.
async fn phased_refusal(harness: CrashHarness, ledger: &EffectLedger, ops: [Op; 3]) -> SweepReport {
    let [first, commit, undo] = ops;
    ledger.refuse("b");
    harness
        .sweep(json!({ "order": 2 }), |run| {
            assert_eq!(run.record.state, TxState::Aborted, "{:?}", run.point);
            ledger.check(&run.record)?;
            assert_eq!(count(ledger, run, commit), 0);
            assert!(
                count(ledger, run, first) <= count(ledger, run, undo),
                "{:?}",
                run.point
            );
            Ok(())
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn every_crash_point_of_a_tcc_ends_confirmed_or_cancelled_each_effect_once() {
    let ledger = EffectLedger::new();
    let report = phased_success(
        tcc_harness(&ledger),
        &ledger,
        [Op::Try, Op::Confirm, Op::Cancel],
    )
    .await;
    // 1 create + 2 per try + 1 decision + 2 per confirm + 1 end = 15 writes; 6 calls
    assert_eq!(report.crashes, 15 + 6, "{report:?}");
    assert_eq!(report.runs, report.crashes + 2);
    // crashes before the decision abort, the others commit
    assert!(report.committed > 0 && report.aborted > 0, "{report:?}");
}

#[tokio::test]
async fn every_crash_point_of_a_refused_tcc_ends_cancelled() {
    let ledger = EffectLedger::new();
    let report = phased_refusal(
        tcc_harness(&ledger),
        &ledger,
        [Op::Try, Op::Confirm, Op::Cancel],
    )
    .await;
    assert!(report.crashes >= 10, "{report:?}");
    assert_eq!(report.aborted, report.runs);
}

#[tokio::test]
async fn every_crash_point_of_a_two_phase_commit_ends_committed_or_rolled_back() {
    let ledger = EffectLedger::new();
    let report = phased_success(
        two_phase_harness(&ledger),
        &ledger,
        [Op::Prepare, Op::Commit, Op::Rollback],
    )
    .await;
    assert_eq!(report.crashes, 15 + 6, "{report:?}");
    assert!(report.committed > 0 && report.aborted > 0, "{report:?}");
}

#[tokio::test]
async fn every_crash_point_of_a_refused_two_phase_commit_ends_rolled_back() {
    let ledger = EffectLedger::new();
    let report = phased_refusal(
        two_phase_harness(&ledger),
        &ledger,
        [Op::Prepare, Op::Commit, Op::Rollback],
    )
    .await;
    assert!(report.crashes >= 10, "{report:?}");
    assert_eq!(report.aborted, report.runs);
}

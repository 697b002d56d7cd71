//! Crash injection on the saga coordinator: for every N, crash after the
//! Nth durable write and after the Nth participant call, recover on a new
//! coordinator, and check the log and the participants.

use std::sync::Arc;
use std::time::Duration;

use rampart_retry::Backoff;
use rampart_transaction::coordinator::CoordinatorConfig;
use rampart_transaction::model::TxState;
use rampart_transaction::saga::{Saga, Step};
use rampart_transaction::store::MemoryTxStore;
use rampart_transaction::testing::{CrashHarness, CrashPoint, EffectLedger};
use serde_json::{Value, json};

fn config() -> CoordinatorConfig {
    CoordinatorConfig::new().backoff(Backoff::Constant {
        delay: Duration::from_millis(1),
    })
}

/// a → (b ∥ c) → d, requests built from the input and earlier outputs.
fn saga(pivot: Option<&str>) -> Saga {
    let mut b = Saga::builder("crash-order")
        .step(Step::new("a", "p").request(|input: &Value, _| json!({ "order": input["order"] })))
        .step(
            Step::new("b", "p")
                .after(["a"])
                .request(|_, outputs| json!({ "from_a": outputs["a"] })),
        )
        .step(Step::new("c", "q").after(["a"]))
        .step(
            Step::new("d", "q")
                .after(["b", "c"])
                .request_value(json!("fixed")),
        );
    if let Some(p) = pivot {
        b = b.pivot(p);
    }
    b.build().unwrap()
}

fn harness(ledger: &EffectLedger, saga: Saga) -> CrashHarness {
    CrashHarness::new(Arc::new(MemoryTxStore::new()), config(), saga)
        .participant("p", ledger.participant())
        .participant("q", ledger.participant())
}

#[tokio::test]
async fn every_crash_point_on_the_success_path_ends_committed_with_each_effect_once() {
    let ledger = EffectLedger::new();
    let report = harness(&ledger, saga(None))
        .sweep(json!({ "order": 7 }), |run| {
            assert_eq!(run.record.state, TxState::Committed, "{:?}", run.point);
            ledger.check(&run.record)?;
            assert_eq!(ledger.applied(&run.record.id).len(), 4);
            Ok(())
        })
        .await
        .unwrap();
    // 1 create + 2 per action + 1 commit = 10 writes, 4 calls; each point, then one run without crash
    assert_eq!(report.crashes, 10 + 4, "{report:?}");
    assert_eq!(report.runs, report.crashes + 2);
    assert_eq!(report.committed, report.runs);
}

#[tokio::test]
async fn every_crash_point_when_a_later_step_refuses_ends_aborted_and_compensated() {
    let ledger = EffectLedger::new();
    ledger.refuse("d");
    let mut duplicates = 0;
    let report = harness(&ledger, saga(None))
        .sweep(json!({ "order": 8 }), |run| {
            assert_eq!(run.record.state, TxState::Aborted, "{:?}", run.point);
            ledger.check(&run.record)?;
            let applied = ledger.applied(&run.record.id);
            // a, b, c applied and compensated; d refused, so never applied
            for step in ["a", "b", "c"] {
                for op in ["action", "compensate"] {
                    assert!(
                        applied
                            .iter()
                            .any(|(b, o)| b.as_str() == step && o.as_str() == op),
                        "{:?}: {step} {op} missing from {applied:?}",
                        run.point
                    );
                }
            }
            assert!(
                !applied
                    .iter()
                    .any(|(b, o)| b.as_str() == "d" && o.as_str() == "action")
            );
            duplicates += ledger.duplicates(&run.record.id);
            Ok(())
        })
        .await
        .unwrap();
    assert!(report.crashes >= 15, "{report:?}");
    assert_eq!(report.aborted, report.runs);
    // crashes after a call took effect make recovery re-send it: the ledger saw repeats
    assert!(duplicates > 0);
}

#[tokio::test]
async fn every_crash_point_with_a_pivot_goes_forward_after_it() {
    let ledger = EffectLedger::new();
    let report = harness(&ledger, saga(Some("a")))
        .sweep(json!({ "order": 9 }), |run| {
            assert_eq!(run.record.state, TxState::Committed);
            ledger.check(&run.record)
        })
        .await
        .unwrap();
    assert!(report.crashes >= 14, "{report:?}");
}

#[tokio::test]
async fn a_single_run_reports_its_crash_and_the_recovered_state() {
    let ledger = EffectLedger::new();
    let h = harness(&ledger, saga(None));
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

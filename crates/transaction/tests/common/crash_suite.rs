//! The crash-injection sweeps of a saga `a → (b ∥ c) → d`, run on every
//! store: memory (tests/crash.rs), SQLite and PostgreSQL
//! (tests/crash_sql.rs).

use std::sync::Arc;
use std::time::Duration;

use rampart_retry::Backoff;
use rampart_transaction::coordinator::CoordinatorConfig;
use rampart_transaction::model::TxState;
use rampart_transaction::saga::{Saga, Step};
use rampart_transaction::store::TxStore;
use rampart_transaction::testing::{CrashHarness, EffectLedger};
use serde_json::{Value, json};

pub(crate) fn config() -> CoordinatorConfig {
    CoordinatorConfig::new().backoff(Backoff::Constant {
        delay: Duration::from_millis(1),
    })
}

/// a → (b ∥ c) → d, requests built from the input and earlier outputs.
pub(crate) fn saga(pivot: Option<&str>) -> Saga {
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

pub(crate) fn harness(store: Arc<dyn TxStore>, ledger: &EffectLedger, saga: Saga) -> CrashHarness {
    CrashHarness::new(store, config(), saga)
        .participant("p", ledger.participant())
        .participant("q", ledger.participant())
}

/// For every crash point on the success path: committed, each effect once.
pub(crate) async fn success_path(store: Arc<dyn TxStore>) {
    let ledger = EffectLedger::new();
    let report = harness(store, &ledger, saga(None))
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

/// For every crash point when the last step refuses: aborted, every
/// action that ran compensated, nothing applied twice.
pub(crate) async fn refusal_path(store: Arc<dyn TxStore>) {
    let ledger = EffectLedger::new();
    ledger.refuse("d");
    let mut duplicates = 0;
    let report = harness(store, &ledger, saga(None))
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

/// For every crash point with a pivot: forward to committed.
pub(crate) async fn pivot_path(store: Arc<dyn TxStore>) {
    let ledger = EffectLedger::new();
    let report = harness(store, &ledger, saga(Some("a")))
        .sweep(json!({ "order": 9 }), |run| {
            assert_eq!(run.record.state, TxState::Committed);
            ledger.check(&run.record)
        })
        .await
        .unwrap();
    assert!(report.crashes >= 14, "{report:?}");
}

//! The crash-injection sweeps of a saga `a → (b ∥ c) → d` and of a
//! 3-branch TCC and 2PC transaction, run on every store: memory
//! (tests/crash.rs), SQLite and PostgreSQL (tests/crash_sql.rs).

use std::sync::Arc;
use std::time::Duration;

use rampart_retry::Backoff;
use rampart_transaction::coordinator::CoordinatorConfig;
use rampart_transaction::model::{Op, Protocol, TxState};
use rampart_transaction::saga::{Saga, Step};
use rampart_transaction::store::TxStore;
use rampart_transaction::tcc::{Branch, Tcc};
use rampart_transaction::testing::{CrashHarness, CrashRun, EffectLedger};
use rampart_transaction::three_phase::ThreePhase;
use rampart_transaction::two_phase::TwoPhase;
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
    // 5 writes (create with a's Sent; a's success with the Sent of b and c;
    // one of b, c alone; the other with d's Sent; d's with the commit) and
    // 4 calls; each point, then one run without crash
    assert_eq!(report.crashes, 5 + 4, "{report:?}");
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
    // as on the success path: the pivot's decision rides with a's success
    assert_eq!(report.crashes, 5 + 4, "{report:?}");
    assert_eq!(report.committed, report.runs);
}

/// A 3-branch TCC, 2PC or 3PC harness: `a` with a built request, `b` committed
/// through `p`, `c` rolled back through `p` with a fixed request.
fn phased_harness(
    store: Arc<dyn TxStore>,
    ledger: &EffectLedger,
    protocol: Protocol,
) -> CrashHarness {
    let branches = [
        Branch::new("a", "p").request(|input: &Value, _| json!({ "order": input["order"] })),
        Branch::new("b", "q").commit_with("p"),
        Branch::new("c", "q")
            .undo_with("p")
            .request_value(json!("fixed")),
    ];
    let h = match protocol {
        Protocol::Tcc => {
            let mut b = Tcc::builder("crash-tcc");
            for branch in branches {
                b = b.branch(branch);
            }
            CrashHarness::tcc(store, config(), b.build().unwrap())
        }
        Protocol::TwoPhase => {
            let mut b = TwoPhase::builder("crash-2pc");
            for branch in branches {
                b = b.branch(branch);
            }
            CrashHarness::two_phase(store, config(), b.build().unwrap())
        }
        _ => {
            let mut b = ThreePhase::builder("crash-3pc");
            for branch in branches {
                b = b.branch(branch);
            }
            CrashHarness::three_phase(store, config(), b.build().unwrap())
        }
    };
    h.participant("p", ledger.participant())
        .participant("q", ledger.participant())
}

/// The effects of `op` applied for the run's transaction.
fn applied(ledger: &EffectLedger, run: &CrashRun, op: Op) -> usize {
    ledger
        .applied(&run.record.id)
        .iter()
        .filter(|(_, o)| *o == op)
        .count()
}

/// For every crash point of a 3-branch TCC (`Protocol::Tcc`), 2PC or 3PC
/// transaction: when phase one succeeds, a crash before the decision is
/// logged aborts (every try / prepare that applied is undone, nothing
/// committed) and one after it commits every branch once (3PC: a crash
/// once a PreCommit is logged goes forward and commits too); when branch
/// `b` refuses, every run ends aborted. The ledger checks no forward op
/// arrived after its undo and nothing was applied twice.
pub(crate) async fn phased_paths(store: Arc<dyn TxStore>, protocol: Protocol) {
    let [first, commit, undo] = match protocol {
        Protocol::Tcc => [Op::Try, Op::Confirm, Op::Cancel],
        Protocol::TwoPhase => [Op::Prepare, Op::Commit, Op::Rollback],
        _ => [Op::CanCommit, Op::Commit, Op::Rollback],
    };
    let three_phase = protocol == Protocol::ThreePhase;
    let ledger = EffectLedger::new();
    let report = phased_harness(Arc::clone(&store), &ledger, protocol)
        .sweep(json!({ "order": 1 }), |run| {
            ledger.check(&run.record)?;
            let n = |op| applied(&ledger, run, op);
            if run.record.state == TxState::Committed {
                assert_eq!([n(first), n(commit), n(undo)], [3, 3, 0], "{:?}", run.point);
                if three_phase {
                    assert_eq!(n(Op::PreCommit), 3, "{:?}", run.point);
                }
            } else {
                assert!(run.crashed, "{:?}", run.point);
                assert_eq!(n(commit), 0, "{:?}", run.point);
                // 3PC: only a crash before any PreCommit was logged aborts
                let pre_logged = run.record.branches.iter().any(|b| b.op == Op::PreCommit);
                assert!(!pre_logged, "{:?}", run.point);
                // every applied one undone; one logged sent that never
                // arrived is undone too (an empty cancel)
                assert!(n(first) <= n(undo), "{:?}", run.point);
            }
            Ok(())
        })
        .await
        .unwrap();
    // 1 create + 2 per phase-one call + 1 decision + 2 per commit + 1 end
    // = 15 writes; 6 calls. 3PC adds 2 writes and 1 call per PreCommit.
    let expected = if three_phase { 21 + 9 } else { 15 + 6 };
    assert_eq!(report.crashes, expected, "{report:?}");
    assert_eq!(report.runs, report.crashes + 2);
    // crashes before the decision abort, the others commit
    assert!(report.committed > 0 && report.aborted > 0, "{report:?}");

    let ledger = EffectLedger::new();
    ledger.refuse("b");
    let report = phased_harness(store, &ledger, protocol)
        .sweep(json!({ "order": 2 }), |run| {
            assert_eq!(run.record.state, TxState::Aborted, "{:?}", run.point);
            ledger.check(&run.record)?;
            let n = |op| applied(&ledger, run, op);
            assert_eq!(n(commit), 0, "{:?}", run.point);
            assert!(n(first) <= n(undo), "{:?}", run.point);
            Ok(())
        })
        .await
        .unwrap();
    assert!(report.crashes >= 10, "{report:?}");
    assert_eq!(report.aborted, report.runs);
}

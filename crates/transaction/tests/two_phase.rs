//! The 2PC engine's behaviour: prepare all, the decision logged before
//! phase two, commit all or roll back what may have prepared, presumed
//! abort after a crash, `Coordinator::decision` for participants in doubt,
//! retries and parking.

#[path = "common/script.rs"]
mod script;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_transaction::coordinator::{Coordinator, CoordinatorConfig, TxError};
use rampart_transaction::model::{Decision, Op, TxId, TxState};
use rampart_transaction::participant::{BranchCall, BranchError, participant};
use rampart_transaction::store::TxStore;
use rampart_transaction::testing::{CrashHarness, CrashPoint, EffectLedger, FaultyStore};
use rampart_transaction::two_phase::{Branch, TwoPhase};
use script::{Script, config, coordinator, memory};
use serde_json::{Value, json};

fn abc(sequential: bool) -> TwoPhase {
    let mut b = TwoPhase::builder("abc")
        .branch(Branch::new("a", "p"))
        .branch(Branch::new("b", "p"))
        .branch(Branch::new("c", "p"));
    if sequential {
        b = b.sequential();
    }
    b.build().unwrap()
}

/// What a commit saw in the log: branch, decision, state.
type Seen = (String, Option<Decision>, TxState);

#[tokio::test(start_paused = true)]
async fn the_commit_decision_is_durable_before_any_commit_is_sent() {
    let store = memory();
    // each commit reads the log as a participant asking the coordinator would
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (log, s) = (Arc::clone(&store), Arc::clone(&seen));
    let p = participant(tower::service_fn(move |call: BranchCall| {
        let (log, seen) = (Arc::clone(&log), Arc::clone(&s));
        async move {
            if call.op == Op::Commit {
                let record = log.load(&call.tx).await.unwrap().unwrap();
                seen.lock()
                    .unwrap()
                    .push((call.branch.to_string(), record.decision, record.state));
            }
            Ok::<_, BranchError>(json!({ "op": call.op.as_str() }))
        }
    }));
    let c = Coordinator::new(store, config())
        .unwrap()
        .participant("p", p);
    let outcome = c.start_two_phase(&abc(false), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    assert_eq!(outcome.outputs["b"], json!({ "op": "prepare" }));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for (_, decision, state) in seen {
        assert_eq!(decision, Some(Decision::Commit));
        assert_eq!(state, TxState::Committing);
    }
    assert_eq!(
        c.decision(&outcome.id).await.unwrap(),
        Some(Decision::Commit)
    );
}

#[tokio::test(start_paused = true)]
async fn prepares_run_in_parallel_and_commits_follow_all_of_them() {
    let script = Script::new(|call, _| {
        let secs = u64::from(call.op == Op::Prepare);
        (Duration::from_secs(secs), Ok(Value::Null))
    });
    let c = coordinator(memory(), &script);
    let outcome = c.start_two_phase(&abc(false), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    let (a, b) = (script.call("a:prepare"), script.call("b:prepare"));
    assert_eq!(a.0, b.0);
    let last_prepared = ["a", "b", "c"]
        .iter()
        .map(|x| script.call(&format!("{x}:prepare")).1)
        .max()
        .unwrap();
    for x in ["a", "b", "c"] {
        assert!(script.call(&format!("{x}:commit")).0 >= last_prepared);
        assert_eq!(script.count(&format!("{x}:rollback")), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_prepare_rolls_back_what_may_have_prepared() {
    let script = Script::new(|call, _| match (call.branch.as_str(), call.op) {
        ("c", Op::Prepare) => (Duration::ZERO, Err(BranchError::terminal("constraint"))),
        _ => (Duration::ZERO, Ok(Value::Null)),
    });
    let c = coordinator(memory(), &script);
    let outcome = c.start_two_phase(&abc(false), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Aborted);
    assert!(outcome.reason.as_deref().unwrap().contains("constraint"));
    assert_eq!(script.count("a:rollback"), 1);
    assert_eq!(script.count("b:rollback"), 1);
    assert_eq!(script.count("c:rollback"), 0);
    for x in ["a", "b", "c"] {
        assert_eq!(script.count(&format!("{x}:commit")), 0);
    }
    assert_eq!(
        c.decision(&outcome.id).await.unwrap(),
        Some(Decision::Abort)
    );
}

#[tokio::test(start_paused = true)]
async fn sequential_prepares_stop_at_the_first_refusal() {
    let script = Script::new(|call, _| match (call.branch.as_str(), call.op) {
        ("b", Op::Prepare) => (Duration::ZERO, Err(BranchError::terminal("no"))),
        _ => (Duration::ZERO, Ok(Value::Null)),
    });
    let c = coordinator(memory(), &script);
    let outcome = c.start_two_phase(&abc(true), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Aborted);
    assert_eq!(script.calls(), ["a:prepare", "b:prepare", "a:rollback"]);
}

#[tokio::test]
async fn presumed_abort_a_crash_before_the_decision_rolls_back_and_answers_abort() {
    let ledger = EffectLedger::new();
    let store = memory();
    let harness = CrashHarness::two_phase(Arc::clone(&store), CoordinatorConfig::new(), abc(false))
        .participant("p", ledger.participant());
    let id = TxId::new("2pc-presumed-abort").unwrap();
    // all three prepares applied, then the coordinator died before deciding
    let run = harness
        .run(CrashPoint::AfterCall(3), id.clone(), json!({}))
        .await
        .unwrap();
    assert!(run.crashed);
    assert_eq!(run.record.state, TxState::Aborted);
    assert!(
        run.record
            .reason
            .as_deref()
            .unwrap()
            .contains("presumed abort")
    );
    ledger.check(&run.record).unwrap();
    let applied = ledger.applied(&id);
    for x in ["a", "b", "c"] {
        assert!(
            applied
                .iter()
                .any(|(b, op)| b.as_str() == x && *op == Op::Rollback),
            "{applied:?}"
        );
    }
    let c = Coordinator::new(store, config()).unwrap();
    assert_eq!(c.decision(&id).await.unwrap(), Some(Decision::Abort));
}

#[tokio::test]
async fn a_crash_after_the_decision_commits_on_recovery() {
    let ledger = EffectLedger::new();
    let harness = CrashHarness::two_phase(memory(), CoordinatorConfig::new(), abc(false))
        .participant("p", ledger.participant());
    let id = TxId::new("2pc-after-decision").unwrap();
    // 3 prepares, the decision, then the coordinator died after the first commit
    let run = harness
        .run(CrashPoint::AfterCall(4), id.clone(), json!({}))
        .await
        .unwrap();
    assert!(run.crashed);
    assert_eq!(run.record.state, TxState::Committed);
    ledger.check(&run.record).unwrap();
    assert!(
        ledger
            .applied(&id)
            .iter()
            .all(|(_, op)| *op != Op::Rollback)
    );
}

#[tokio::test(start_paused = true)]
async fn decision_answers_abort_for_an_unknown_id_and_none_while_undecided() {
    let store = memory();
    let c = Coordinator::new(Arc::clone(&store), config()).unwrap();
    assert_eq!(
        c.decision(&TxId::new("never-started").unwrap())
            .await
            .unwrap(),
        Some(Decision::Abort)
    );
    // a participant asks while its own prepare is running: undecided
    let asked: Arc<Mutex<Vec<Option<Decision>>>> = Arc::default();
    let (slot, c2) = (Arc::clone(&asked), c.clone());
    let p = participant(tower::service_fn(move |call: BranchCall| {
        let (slot, c) = (Arc::clone(&slot), c2.clone());
        async move {
            if call.op == Op::Prepare {
                let d = c.decision(&call.tx).await.unwrap();
                slot.lock().unwrap().push(d);
            }
            Ok::<_, BranchError>(Value::Null)
        }
    }));
    let c = c.participant("p", p);
    let outcome = c.start_two_phase(&abc(false), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    assert_eq!(asked.lock().unwrap().clone(), vec![None, None, None]);
}

#[tokio::test(start_paused = true)]
async fn a_rollback_failing_past_the_limit_parks_and_keeps_answering_abort() {
    let script = Script::new(|call, _| match (call.branch.as_str(), call.op) {
        ("a", Op::Prepare) => (Duration::ZERO, Err(BranchError::terminal("no"))),
        ("b", Op::Rollback) => (Duration::ZERO, Err(BranchError::retryable("down"))),
        _ => (Duration::ZERO, Ok(Value::Null)),
    });
    let c = coordinator(memory(), &script);
    let outcome = c.start_two_phase(&abc(false), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::NeedsIntervention);
    assert!(
        outcome
            .reason
            .as_deref()
            .unwrap()
            .contains("rollback of branch b"),
        "{outcome:?}"
    );
    assert_eq!(script.count("b:rollback"), 3);
    assert_eq!(script.count("c:rollback"), 1);
    assert_eq!(
        c.decision(&outcome.id).await.unwrap(),
        Some(Decision::Abort)
    );
    let record = c
        .mark_resolved(&outcome.id, "rolled back by hand")
        .await
        .unwrap();
    assert_eq!(record.state, TxState::Resolved);
    assert_eq!(
        c.decision(&outcome.id).await.unwrap(),
        Some(Decision::Abort)
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_down_during_the_prepares_interrupts_and_recovery_rolls_back_without_re_preparing()
{
    let faulty = Arc::new(FaultyStore::new(memory()));
    let script = Script::new({
        let faulty = Arc::clone(&faulty);
        move |call, _| {
            if call.branch.as_str() == "a" && call.op == Op::Prepare {
                faulty.set_down(true);
            }
            (Duration::ZERO, Ok(Value::Null))
        }
    });
    let c = Coordinator::new(faulty.clone(), config().lease(Duration::from_secs(2)))
        .unwrap()
        .participant("p", script.participant());
    let id = TxId::new("2pc-down").unwrap();
    let err = c
        .start_two_phase_with_id(&abc(true), id.clone(), json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, TxError::Interrupted { .. }), "{err}");
    faulty.set_down(false);
    // undecided while the transaction waits for recovery
    assert_eq!(c.decision(&id).await.unwrap(), None);
    // the lease runs out on the wall clock: stand in for that wait
    faulty.release(&id, c.owner()).await.unwrap();
    let report = c.recover_once().await.unwrap();
    assert_eq!(report.aborted, 1, "{report:?}");
    // a's prepare (its result never logged) is rolled back, never re-sent;
    // b and c were never prepared
    assert_eq!(script.calls(), ["a:prepare", "a:rollback"]);
    assert_eq!(c.decision(&id).await.unwrap(), Some(Decision::Abort));
}

//! The TCC engine's behaviour: tries in parallel or in order, the logged
//! decision, confirm all or cancel what was tried, retries and parking,
//! recovery, the definition's checks.

#[path = "common/script.rs"]
mod script;

use std::sync::Arc;
use std::time::Duration;

use rampart_transaction::coordinator::{Coordinator, CoordinatorConfig, TxError};
use rampart_transaction::model::{BranchId, BranchState, Decision, Op, TxId, TxState};
use rampart_transaction::participant::BranchError;
use rampart_transaction::tcc::{Branch, DefinitionError, Tcc};
use rampart_transaction::testing::{CrashHarness, CrashPoint, EffectLedger};
use script::{Script, config, coordinator, memory};
use serde_json::{Value, json};

/// Branches `a`, `b`, `c` on participant `p`.
fn abc(sequential: bool) -> Tcc {
    let mut b = Tcc::builder("abc")
        .branch(Branch::new("a", "p").request(|input: &Value, _| json!({ "sku": input["sku"] })))
        .branch(Branch::new("b", "p").request_value(json!({ "fixed": 1 })))
        .branch(Branch::new("c", "p"));
    if sequential {
        b = b.sequential();
    }
    b.build().unwrap()
}

/// `branch`'s `op` answers with `answer`; everything else succeeds at once.
fn failing(branch: &'static str, op: Op, answer: fn(u32) -> Result<Value, BranchError>) -> Script {
    Script::new(move |call, n| {
        if call.branch.as_str() == branch && call.op == op {
            (Duration::ZERO, answer(n))
        } else {
            (Duration::ZERO, Ok(json!({ "by": call.branch.as_str() })))
        }
    })
}

fn bid(s: &str) -> BranchId {
    BranchId::new(s).unwrap()
}

fn position(calls: &[String], key: &str) -> usize {
    calls
        .iter()
        .position(|c| c == key)
        .unwrap_or_else(|| panic!("no call {key} in {calls:?}"))
}

#[tokio::test(start_paused = true)]
async fn all_tries_succeed_then_every_branch_is_confirmed_after_the_decision() {
    // each try takes 1 s: in parallel they all start at once
    let script = Script::new(|call, _| {
        let secs = u64::from(call.op == Op::Try);
        (
            Duration::from_secs(secs),
            Ok(json!({ "by": call.branch.as_str(), "op": call.op.as_str() })),
        )
    });
    let store = memory();
    let c = coordinator(Arc::clone(&store), &script);
    let outcome = c
        .start_tcc(&abc(false), json!({ "sku": "x" }))
        .await
        .unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    assert_eq!(outcome.outputs["a"], json!({ "by": "a", "op": "try" }));
    let (a, b, c_) = (
        script.call("a:try"),
        script.call("b:try"),
        script.call("c:try"),
    );
    assert_eq!(a.0, b.0);
    assert_eq!(b.0, c_.0);
    let calls = script.calls();
    for branch in ["a", "b", "c"] {
        let confirm = position(&calls, &format!("{branch}:confirm"));
        for other in ["a", "b", "c"] {
            assert!(
                position(&calls, &format!("{other}:try")) < confirm,
                "{calls:?}"
            );
        }
        assert_eq!(script.count(&format!("{branch}:cancel")), 0);
    }
    let record = c.inspect(&outcome.id).await.unwrap();
    assert_eq!(record.decision, Some(Decision::Commit));
    assert_eq!(
        record.branch(&bid("a"), Op::Try).unwrap().request,
        json!({ "sku": "x" })
    );
    assert_eq!(
        record.branch(&bid("b"), Op::Try).unwrap().request,
        json!({ "fixed": 1 })
    );
    // the confirm carries the try's request and answer
    let confirm = record.branch(&bid("b"), Op::Confirm).unwrap();
    assert_eq!(confirm.state, BranchState::Succeeded);
    assert_eq!(
        confirm.request,
        json!({ "request": { "fixed": 1 }, "output": { "by": "b", "op": "try" } })
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_try_aborts_and_cancels_only_what_was_tried() {
    let script = failing("b", Op::Try, |_| Err(BranchError::terminal("no stock")));
    let c = coordinator(memory(), &script);
    let outcome = c.start_tcc(&abc(false), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Aborted);
    assert!(
        outcome.reason.as_deref().unwrap().contains("no stock"),
        "{outcome:?}"
    );
    assert_eq!(script.count("a:cancel"), 1);
    assert_eq!(script.count("c:cancel"), 1);
    // refused for good: it had no effect, nothing to cancel
    assert_eq!(script.count("b:cancel"), 0);
    for branch in ["a", "b", "c"] {
        assert_eq!(script.count(&format!("{branch}:confirm")), 0);
    }
    let record = c.inspect(&outcome.id).await.unwrap();
    assert_eq!(record.decision, Some(Decision::Abort));
    assert_eq!(
        record.branch(&bid("b"), Op::Try).unwrap().state,
        BranchState::Failed
    );
    assert_eq!(
        c.decision(&outcome.id).await.unwrap(),
        Some(Decision::Abort)
    );
}

#[tokio::test(start_paused = true)]
async fn a_try_in_doubt_after_its_retries_is_cancelled() {
    let script = failing("c", Op::Try, |_| {
        Err(BranchError::in_doubt("connection reset"))
    });
    let c = coordinator(memory(), &script);
    let outcome = c.start_tcc(&abc(false), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Aborted);
    assert_eq!(script.count("c:try"), 3);
    // it may have applied: cancelled like the others
    assert_eq!(script.count("c:cancel"), 1);
    let record = c.inspect(&outcome.id).await.unwrap();
    assert_eq!(
        record.branch(&bid("c"), Op::Try).unwrap().state,
        BranchState::InDoubt
    );
}

#[tokio::test(start_paused = true)]
async fn sequential_tries_stop_at_the_first_refusal() {
    let script = failing("b", Op::Try, |_| Err(BranchError::terminal("no")));
    let c = coordinator(memory(), &script);
    let outcome = c.start_tcc(&abc(true), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Aborted);
    assert_eq!(script.calls(), ["a:try", "b:try", "a:cancel"]);
}

#[tokio::test(start_paused = true)]
async fn sequential_tries_run_in_order_and_see_earlier_outputs() {
    let script = Script::ok();
    let c = coordinator(memory(), &script);
    let tcc = Tcc::builder("seq")
        .branch(Branch::new("a", "p"))
        .branch(Branch::new("b", "p").request(|_, outputs| json!({ "after": outputs["a"] })))
        .sequential()
        .build()
        .unwrap();
    let outcome = c.start_tcc(&tcc, json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    assert_eq!(&script.calls()[..2], ["a:try", "b:try"]);
    let record = c.inspect(&outcome.id).await.unwrap();
    assert_eq!(
        record.branch(&bid("b"), Op::Try).unwrap().request,
        json!({ "after": { "by": "a" } })
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_confirm_is_retried_then_succeeds() {
    let script = failing("a", Op::Confirm, |n| {
        if n < 3 {
            Err(BranchError::retryable("busy"))
        } else {
            Ok(Value::Null)
        }
    });
    let c = coordinator(memory(), &script);
    let outcome = c.start_tcc(&abc(false), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    assert_eq!(script.count("a:confirm"), 3);
    assert_eq!(script.count("a:cancel"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_confirm_failing_past_the_limit_parks_then_resume_finishes_it() {
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&fixed);
    let script = Script::new(move |call, _| {
        let broken = call.branch.as_str() == "a"
            && call.op == Op::Confirm
            && !flag.load(std::sync::atomic::Ordering::SeqCst);
        let answer = if broken {
            Err(BranchError::retryable("down"))
        } else {
            Ok(Value::Null)
        };
        (Duration::ZERO, answer)
    });
    let c = coordinator(memory(), &script);
    let outcome = c.start_tcc(&abc(false), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::NeedsIntervention);
    assert!(
        outcome
            .reason
            .as_deref()
            .unwrap()
            .contains("confirm of branch a"),
        "{outcome:?}"
    );
    assert_eq!(script.count("a:confirm"), 3);
    // past the decision: never cancelled, and the decision still answers commit
    assert_eq!(script.count("a:cancel"), 0);
    assert_eq!(
        c.decision(&outcome.id).await.unwrap(),
        Some(Decision::Commit)
    );
    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    let record = c.resume(&outcome.id).await.unwrap();
    assert_eq!(record.state, TxState::Committed);
    assert_eq!(script.count("a:confirm"), 4);
    // the branches confirmed before are not confirmed again
    assert_eq!(script.count("b:confirm"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refused_cancel_parks_with_the_abort_decision() {
    let script = Script::new(|call, _| match (call.branch.as_str(), call.op) {
        ("b", Op::Try) => (Duration::ZERO, Err(BranchError::terminal("no"))),
        ("a", Op::Cancel) => (Duration::ZERO, Err(BranchError::terminal("cannot"))),
        _ => (Duration::ZERO, Ok(Value::Null)),
    });
    let c = coordinator(memory(), &script);
    let outcome = c.start_tcc(&abc(false), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::NeedsIntervention);
    let record = c.inspect(&outcome.id).await.unwrap();
    assert_eq!(record.decision, Some(Decision::Abort));
    assert_eq!(script.count("c:cancel"), 1);
}

#[tokio::test(start_paused = true)]
async fn recovery_aborts_a_transaction_that_crashed_before_its_decision() {
    let ledger = EffectLedger::new();
    let harness = CrashHarness::tcc(memory(), CoordinatorConfig::new(), abc(false))
        .participant("p", ledger.participant());
    let id = TxId::new("tcc-crash-before-decision").unwrap();
    // the 2nd try applied, then the coordinator died
    let run = harness
        .run(CrashPoint::AfterCall(2), id.clone(), json!({}))
        .await
        .unwrap();
    assert!(run.crashed);
    assert_eq!(run.record.state, TxState::Aborted);
    assert_eq!(run.record.decision, Some(Decision::Abort));
    assert!(
        run.record
            .reason
            .as_deref()
            .unwrap()
            .contains("presumed abort")
    );
    ledger.check(&run.record).unwrap();
    let applied = ledger.applied(&id);
    assert!(
        applied.iter().all(|(_, op)| *op != Op::Confirm),
        "{applied:?}"
    );
    // the two tries that applied are cancelled (a third logged as sent would be too)
    let tried: Vec<_> = applied
        .iter()
        .filter(|(_, op)| *op == Op::Try)
        .map(|(b, _)| b)
        .collect();
    assert_eq!(tried.len(), 2, "{applied:?}");
    for b in tried {
        assert!(applied.contains(&(b.clone(), Op::Cancel)), "{applied:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn recovery_confirms_a_transaction_that_crashed_after_its_decision() {
    let ledger = EffectLedger::new();
    let harness = CrashHarness::tcc(memory(), CoordinatorConfig::new(), abc(false))
        .participant("p", ledger.participant());
    let id = TxId::new("tcc-crash-after-decision").unwrap();
    // 3 tries, then the first confirm applied
    let run = harness
        .run(CrashPoint::AfterCall(4), id.clone(), json!({}))
        .await
        .unwrap();
    assert!(run.crashed);
    assert_eq!(run.record.state, TxState::Committed);
    ledger.check(&run.record).unwrap();
    assert_eq!(ledger.applied(&id).len(), 6);
}

#[tokio::test]
async fn an_unknown_participant_fails_before_anything_is_logged() {
    let store = memory();
    let c = coordinator(Arc::clone(&store), &Script::ok());
    let tcc = Tcc::builder("t")
        .branch(Branch::new("a", "p").undo_with("nobody"))
        .build()
        .unwrap();
    let id = TxId::new("tcc-unknown").unwrap();
    let err = c
        .start_tcc_with_id(&tcc, id.clone(), json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TxError::UnknownParticipant { participant, .. } if participant == "nobody"),
        "{err}"
    );
    assert!(store.load(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn confirm_and_cancel_go_to_their_own_participants() {
    let (tries, confirms) = (Script::ok(), Script::ok());
    let c = Coordinator::new(memory(), config())
        .unwrap()
        .participant("p", tries.participant())
        .participant("q", confirms.participant());
    let tcc = Tcc::builder("t")
        .branch(Branch::new("a", "p").commit_with("q").undo_with("q"))
        .build()
        .unwrap();
    let outcome = c.start_tcc(&tcc, json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    assert_eq!(tries.calls(), ["a:try"]);
    assert_eq!(confirms.calls(), ["a:confirm"]);
}

#[test]
fn invalid_definitions_are_refused_with_the_cause() {
    assert_eq!(
        Tcc::builder("t").build().unwrap_err(),
        DefinitionError::NoBranches
    );
    let dup = Tcc::builder("t")
        .branch(Branch::new("a", "p"))
        .branch(Branch::new("a", "q"))
        .build()
        .unwrap_err();
    assert_eq!(dup, DefinitionError::DuplicateBranch("a".into()));
    let zero = Tcc::builder("t")
        .branch(Branch::new("a", "p").timeout(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(zero, DefinitionError::ZeroTimeout("a".into()));
    let empty = Tcc::builder("t")
        .branch(Branch::new("a", "p").commit_with(""))
        .build()
        .unwrap_err();
    assert_eq!(empty, DefinitionError::EmptyParticipant("a".into()));
    assert!(matches!(
        Tcc::builder("bad name")
            .branch(Branch::new("a", "p"))
            .build(),
        Err(DefinitionError::InvalidId(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn the_global_timeout_bounds_the_tries_and_is_logged_as_a_deadline() {
    // b's try hangs; the deadline (5 s) cuts it and cancels every try
    let script = Script::new(|call, _| {
        let hang = call.branch.as_str() == "b" && call.op == Op::Try;
        (
            Duration::from_secs(if hang { 600 } else { 0 }),
            Ok(Value::Null),
        )
    });
    let c = coordinator(memory(), &script);
    let tcc = Tcc::builder("abc")
        .branch(Branch::new("a", "p"))
        .branch(Branch::new("b", "p"))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let outcome = c.start_tcc(&tcc, json!({})).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(outcome.state, TxState::Aborted);
    assert!(outcome.reason.unwrap().contains("global timeout"));
    let record = c.inspect(&outcome.id).await.unwrap();
    assert!(record.deadline.is_some());
    assert_eq!(script.count("a:cancel"), 1);
    assert_eq!(script.count("b:cancel"), 1);
    assert_eq!(script.count("a:confirm"), 0);
}

#[tokio::test(start_paused = true)]
async fn the_global_timeout_does_not_cut_phase_two() {
    // every confirm takes 10 s, twice the global timeout: it still commits
    let script = Script::new(|call, _| {
        let slow = call.op == Op::Confirm;
        (
            Duration::from_secs(if slow { 10 } else { 0 }),
            Ok(Value::Null),
        )
    });
    let c = coordinator(memory(), &script);
    let tcc = Tcc::builder("abc")
        .branch(Branch::new("a", "p"))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let outcome = c.start_tcc(&tcc, json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    assert_eq!(script.count("a:confirm"), 1);
}

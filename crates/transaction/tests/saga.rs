//! The saga coordinator's behaviour: order and parallelism, compensation,
//! the pivot, retries and parking, the store going away, corrupt records,
//! two coordinators on one store, admin calls and metrics.

use std::sync::Arc;
use std::time::Duration;

use rampart_core::testing::TestRecorder;
use rampart_transaction::coordinator::{Coordinator, TxError};
use rampart_transaction::model::{BranchState, Op, Protocol, TxId, TxRecord, TxState, now_ms};
use rampart_transaction::participant::{BranchCall, BranchError, participant};
use rampart_transaction::saga::{Saga, SagaError, Step};
use rampart_transaction::store::{StoreError, TxFilter, TxStore};
use rampart_transaction::testing::{EffectLedger, FaultyStore};
use serde_json::{Value, json};
use tokio::time::Instant;

#[path = "common/script.rs"]
mod script;

use script::{Script, config, coordinator, memory};

/// The parked transactions, through the admin list.
async fn parked(c: &Coordinator) -> Vec<rampart_transaction::store::TxSummary> {
    let filter = TxFilter {
        states: vec![TxState::NeedsIntervention],
        ..TxFilter::default()
    };
    c.list(&filter).await.unwrap()
}

fn chain(names: &[&str]) -> Saga {
    let mut b = Saga::builder("chain");
    let mut prev: Option<&str> = None;
    for n in names {
        let mut step = Step::new(*n, "p");
        if let Some(p) = prev {
            step = step.after([p]);
        }
        b = b.step(step);
        prev = Some(n);
    }
    b.build().unwrap()
}

fn refuse(branch: &'static str) -> Script {
    Script::new(move |call, _| {
        if call.branch.as_str() == branch && call.op == Op::Action {
            (Duration::ZERO, Err(BranchError::terminal("no")))
        } else {
            (Duration::ZERO, Ok(json!({ "by": call.branch.as_str() })))
        }
    })
}

/// `branch`'s action takes `secs`; everything else answers at once.
fn slow(branch: &'static str, secs: u64) -> Script {
    Script::new(move |call, _| {
        let slow = call.branch.as_str() == branch && call.op == Op::Action;
        (
            Duration::from_secs(if slow { secs } else { 0 }),
            Ok(Value::Null),
        )
    })
}

/// `branch`'s action takes `millis`; everything else answers at once.
fn slow_millis(branch: &'static str, millis: u64) -> Script {
    Script::new(move |call, _| {
        let slow = call.branch.as_str() == branch && call.op == Op::Action;
        (
            Duration::from_millis(if slow { millis } else { 0 }),
            Ok(Value::Null),
        )
    })
}

/// A saga transaction as a coordinator that died at once left it: running,
/// nothing called, its lease already over.
fn left_behind(id: &str, plan: Value) -> TxRecord {
    let now = now_ms();
    TxRecord {
        id: TxId::new(id).unwrap(),
        protocol: Protocol::Saga,
        state: TxState::Running,
        decision: None,
        input: json!({}),
        plan,
        reason: None,
        created_at: now,
        updated_at: now,
        deadline: None,
        version: 1,
        branches: Vec::new(),
    }
}

// === order and parallelism ===

#[tokio::test(start_paused = true)]
async fn steps_run_in_dependency_order_and_independent_ones_in_parallel() {
    let script = Script::new(|call, _| {
        let secs = if call.branch.as_str() == "a" { 0 } else { 1 };
        (
            Duration::from_secs(secs),
            Ok(json!({ "by": call.branch.as_str() })),
        )
    });
    let c = coordinator(memory(), &script);
    let saga = Saga::builder("dag")
        .step(Step::new("a", "p"))
        .step(Step::new("b", "p").after(["a"]))
        .step(Step::new("c", "p").after(["a"]))
        .step(
            Step::new("d", "p")
                .after(["b", "c"])
                .request(|_, out| json!([out["b"], out["c"]])),
        )
        .build()
        .unwrap();
    let started = Instant::now();
    let outcome = c.start(&saga, json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    assert_eq!(outcome.outputs.len(), 4);
    // b and c together in 1 s, then d in 1 s: 2 s, not 3
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let (a_start, a_end) = script.call("a:action");
    let (b_start, b_end) = script.call("b:action");
    let (c_start, c_end) = script.call("c:action");
    let (d_start, _) = script.call("d:action");
    assert!(a_start <= a_end && a_end <= b_start && a_end <= c_start);
    assert_eq!(b_start, c_start);
    assert!(d_start >= b_end.max(c_end));
    // d's request was built once from the outputs of b and c, and logged
    let record = c.inspect(&outcome.id).await.unwrap();
    let d = record.branch(&"d".parse_id(), Op::Action).unwrap();
    assert_eq!(d.request, json!([{ "by": "b" }, { "by": "c" }]));
    assert_eq!(d.attempts, 1);
}

trait ParseId {
    fn parse_id(&self) -> rampart_transaction::model::BranchId;
}

impl ParseId for &str {
    fn parse_id(&self) -> rampart_transaction::model::BranchId {
        rampart_transaction::model::BranchId::new(*self).unwrap()
    }
}

#[test]
fn bad_definitions_are_refused_with_the_cause() {
    let err = |b: rampart_transaction::saga::SagaBuilder| b.build().unwrap_err();
    assert_eq!(err(Saga::builder("s")), SagaError::NoSteps);
    assert!(matches!(
        err(Saga::builder("s").step(Step::new("a", "p").after(["zz"]))),
        SagaError::UnknownDependency { .. }
    ));
    assert!(matches!(
        err(Saga::builder("s")
            .step(Step::new("a", "p").after(["b"]))
            .step(Step::new("b", "p").after(["a"]))),
        SagaError::Cycle(_)
    ));
    assert!(matches!(
        err(Saga::builder("s")
            .step(Step::new("a", "p"))
            .step(Step::new("a", "p"))),
        SagaError::DuplicateStep(_)
    ));
    assert!(matches!(
        err(Saga::builder("s").step(Step::new("a b", "p"))),
        SagaError::InvalidId(_)
    ));
    assert!(matches!(
        err(Saga::builder("s").step(Step::new("a", "p").timeout(Duration::ZERO))),
        SagaError::ZeroTimeout(_)
    ));
    assert!(matches!(
        err(Saga::builder("s")
            .step(Step::new("a", "p"))
            .step(Step::new("b", "p"))
            .pivot("a")),
        SagaError::PivotNotACut { .. }
    ));
    assert!(matches!(
        err(Saga::builder("s").step(Step::new("a", "p")).pivot("x")),
        SagaError::UnknownPivot(_)
    ));
}

// === compensation ===

#[tokio::test(start_paused = true)]
async fn a_refusal_compensates_what_ran_in_reverse_dependency_order() {
    // a → b → c, a → d; e after c and d refuses
    let script = refuse("e");
    let c = coordinator(memory(), &script);
    let saga = Saga::builder("undo")
        .step(Step::new("a", "p"))
        .step(Step::new("b", "p").after(["a"]))
        .step(Step::new("c", "p").after(["b"]))
        .step(Step::new("d", "p").after(["a"]).without_compensation())
        .step(Step::new("e", "p").after(["c", "d"]))
        .build()
        .unwrap();
    let outcome = c.start(&saga, json!({ "x": 1 })).await.unwrap();
    assert_eq!(outcome.state, TxState::Aborted);
    assert!(
        outcome
            .reason
            .as_deref()
            .unwrap()
            .contains("step e refused"),
        "{outcome:?}"
    );
    let comps: Vec<String> = script
        .calls()
        .into_iter()
        .filter(|k| k.ends_with(":compensate"))
        .collect();
    // e never applied and d has no compensation: c, then b, then a
    assert_eq!(comps, ["c:compensate", "b:compensate", "a:compensate"]);
    // a compensation receives its action's request and output
    let record = c.inspect(&outcome.id).await.unwrap();
    let comp = record.branch(&"b".parse_id(), Op::Compensate).unwrap();
    assert_eq!(
        comp.request,
        json!({ "request": { "x": 1 }, "output": { "by": "b" } })
    );
    assert_eq!(
        record.decision,
        Some(rampart_transaction::model::Decision::Abort)
    );
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_are_retried_then_failed_and_in_doubt_actions_compensated() {
    // b: retryable twice then ok; c: always in doubt → after 3 attempts compensate (it may have run)
    let script = Script::new(|call, n| match (call.branch.as_str(), call.op) {
        ("b", Op::Action) if n <= 2 => (Duration::ZERO, Err(BranchError::retryable("busy"))),
        ("c", Op::Action) => (Duration::ZERO, Err(BranchError::in_doubt("reset"))),
        _ => (Duration::ZERO, Ok(Value::Null)),
    });
    let c = coordinator(memory(), &script);
    let outcome = c.start(&chain(&["a", "b", "c"]), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Aborted);
    assert_eq!(script.count("b:action"), 3);
    assert_eq!(script.count("c:action"), 3);
    // c is compensated although it never said yes: it may have applied
    assert_eq!(script.count("c:compensate"), 1);
    let record = c.inspect(&outcome.id).await.unwrap();
    assert_eq!(
        record.branch(&"c".parse_id(), Op::Action).unwrap().state,
        BranchState::InDoubt
    );
    assert_eq!(
        record.branch(&"b".parse_id(), Op::Action).unwrap().attempts,
        3
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_slower_than_its_timeout_is_in_doubt() {
    let script = slow("b", 60);
    let c = coordinator(memory(), &script);
    let saga = Saga::builder("slow")
        .step(Step::new("a", "p"))
        .step(
            Step::new("b", "p")
                .after(["a"])
                .timeout(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let outcome = c.start(&saga, json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Aborted);
    assert!(outcome.reason.unwrap().contains("no answer within"));
    assert_eq!(script.count("b:compensate"), 1);
}

#[tokio::test(start_paused = true)]
async fn the_global_timeout_before_the_pivot_compensates() {
    let script = slow("b", 20);
    let c = coordinator(memory(), &script);
    let saga = Saga::builder("deadline")
        .step(Step::new("a", "p"))
        .step(Step::new("b", "p").after(["a"]))
        .step(Step::new("c", "p").after(["b"]))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let outcome = c.start(&saga, json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Aborted);
    assert!(outcome.reason.unwrap().contains("global timeout"));
    // the deadline is logged in wall-clock milliseconds (so every
    // coordinator reads it alike): a millisecond tick between logging it
    // and reading it back may bring it 1 ms forward
    let elapsed = started.elapsed();
    assert!(
        elapsed <= Duration::from_secs(5) && elapsed >= Duration::from_millis(4_998),
        "{elapsed:?}"
    );
    assert_eq!(script.count("c:action"), 0);
    assert_eq!(script.count("a:compensate"), 1);
    assert_eq!(script.count("b:compensate"), 1);
}

// === pivot ===

/// a → b → c, b the pivot.
fn pivot_at_b() -> Saga {
    Saga::builder("pivot")
        .step(Step::new("a", "p"))
        .step(Step::new("b", "p").after(["a"]))
        .step(Step::new("c", "p").after(["b"]))
        .pivot("b")
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn past_the_pivot_failures_are_retried_forward_never_compensated() {
    // c fails twice (retryable) after the pivot b, then succeeds
    let script = Script::new(|call, n| match (call.branch.as_str(), call.op) {
        ("c", Op::Action) if n <= 2 => (Duration::ZERO, Err(BranchError::in_doubt("lost"))),
        _ => (Duration::ZERO, Ok(Value::Null)),
    });
    let c = coordinator(memory(), &script);
    let saga = pivot_at_b();
    let outcome = c.start(&saga, json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    assert_eq!(script.count("c:action"), 3);
    assert!(script.calls().iter().all(|k| k.ends_with(":action")));
}

#[tokio::test(start_paused = true)]
async fn past_the_pivot_a_refusal_parks_and_resume_goes_forward() {
    let refusing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let r = Arc::clone(&refusing);
    let script = Script::new(move |call, _| {
        if call.branch.as_str() == "c" && r.load(std::sync::atomic::Ordering::SeqCst) {
            (Duration::ZERO, Err(BranchError::terminal("closed")))
        } else {
            (Duration::ZERO, Ok(Value::Null))
        }
    });
    let c = coordinator(memory(), &script);
    let saga = pivot_at_b();
    let outcome = c.start(&saga, json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::NeedsIntervention);
    assert!(
        outcome
            .reason
            .as_deref()
            .unwrap()
            .contains("past the pivot"),
        "{outcome:?}"
    );
    assert!(!script.calls().iter().any(|k| k.ends_with(":compensate")));
    // nobody drives a parked transaction
    assert_eq!(c.recover_once().await.unwrap().claimed, 0);
    // compensation past the pivot is refused
    assert!(matches!(
        c.force_compensate(&outcome.id).await,
        Err(TxError::InvalidState { .. })
    ));
    refusing.store(false, std::sync::atomic::Ordering::SeqCst);
    let record = c.resume(&outcome.id).await.unwrap();
    assert_eq!(record.state, TxState::Committed);
}

// === parking ===

#[tokio::test(start_paused = true)]
async fn a_compensation_failing_past_the_limit_parks_with_the_reason_then_resumes_or_resolves() {
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = Arc::clone(&fixed);
    let script = Script::new(move |call, _| match (call.branch.as_str(), call.op) {
        ("b", Op::Action) => (Duration::ZERO, Err(BranchError::terminal("no"))),
        ("a", Op::Compensate) if !f.load(std::sync::atomic::Ordering::SeqCst) => {
            (Duration::ZERO, Err(BranchError::retryable("db down")))
        }
        _ => (Duration::ZERO, Ok(Value::Null)),
    });
    let c = coordinator(memory(), &script);
    let saga = chain(&["a", "b"]);
    let first = c.start(&saga, json!({})).await.unwrap();
    assert_eq!(first.state, TxState::NeedsIntervention);
    let reason = first.reason.unwrap();
    assert!(
        reason.contains("compensation of step a") && reason.contains("3 attempts"),
        "{reason}"
    );
    assert_eq!(script.count("a:compensate"), 3);
    let parked = parked(&c).await;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].protocol, Protocol::Saga);

    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    let resumed = c.resume(&first.id).await.unwrap();
    assert_eq!(resumed.state, TxState::Aborted);
    assert_eq!(script.count("a:compensate"), 4);
    assert!(matches!(
        c.resume(&first.id).await,
        Err(TxError::InvalidState { .. })
    ));

    // another one, resolved by hand
    fixed.store(false, std::sync::atomic::Ordering::SeqCst);
    let second = c.start(&saga, json!({})).await.unwrap();
    assert_eq!(second.state, TxState::NeedsIntervention);
    let resolved = c
        .mark_resolved(&second.id, "refunded by hand")
        .await
        .unwrap();
    assert_eq!(resolved.state, TxState::Resolved);
    assert_eq!(resolved.reason.as_deref(), Some("refunded by hand"));
    assert!(matches!(
        c.inspect(&TxId::new("nope").unwrap()).await,
        Err(TxError::NotFound(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn force_compensate_undoes_a_parked_transaction_before_its_pivot() {
    // b keeps being refused after the pivot? no pivot here: a compensation parks, then force
    let script = Script::new(|call, n| match (call.branch.as_str(), call.op) {
        ("b", Op::Action) => (Duration::ZERO, Err(BranchError::terminal("no"))),
        ("a", Op::Compensate) if n <= 3 => (Duration::ZERO, Err(BranchError::retryable("busy"))),
        _ => (Duration::ZERO, Ok(Value::Null)),
    });
    let c = coordinator(memory(), &script);
    let first = c.start(&chain(&["a", "b"]), json!({})).await.unwrap();
    assert_eq!(first.state, TxState::NeedsIntervention);
    let record = c.force_compensate(&first.id).await.unwrap();
    assert_eq!(record.state, TxState::Aborted);
    assert_eq!(
        record.reason.as_deref(),
        Some("compensation forced by an operator")
    );
}

// === durable writes ===

#[tokio::test(start_paused = true)]
async fn a_sequential_saga_of_three_steps_makes_four_durable_writes() {
    let faulty = Arc::new(FaultyStore::new(memory()));
    // each call first checks, in the store, that it was logged `Sent`
    let unlogged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let checked = participant(tower::service_fn({
        let (store, unlogged) = (Arc::clone(&faulty), Arc::clone(&unlogged));
        move |call: BranchCall| {
            let (store, unlogged) = (Arc::clone(&store), Arc::clone(&unlogged));
            async move {
                let record = store.load(&call.tx).await.unwrap().unwrap();
                let logged = record.branch(&call.branch, call.op).map(|b| b.state);
                if logged != Some(BranchState::Sent) {
                    unlogged.lock().unwrap().push((call.branch.clone(), logged));
                }
                Ok::<_, BranchError>(json!({ "by": call.branch.as_str() }))
            }
        }
    }));
    let c = Coordinator::new(faulty.clone(), config())
        .unwrap()
        .participant("p", checked);
    let saga = Saga::builder("three")
        .step(Step::new("a", "p"))
        .step(
            Step::new("b", "p")
                .after(["a"])
                .request(|_, out| json!({ "after": out["a"] })),
        )
        .step(Step::new("c", "p").after(["b"]))
        .build()
        .unwrap();
    let outcome = c.start(&saga, json!({ "order": 1 })).await.unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    // create + a's Sent; a's success + b's Sent; b's success + c's Sent;
    // c's success + Committed
    assert_eq!(faulty.writes(), 4);
    assert!(unlogged.lock().unwrap().is_empty(), "{unlogged:?}");
    let record = c.inspect(&outcome.id).await.unwrap();
    assert_eq!(
        record.decision,
        Some(rampart_transaction::model::Decision::Commit)
    );
    for step in ["a", "b", "c"] {
        let b = record.branch(&step.parse_id(), Op::Action).unwrap();
        assert_eq!((b.state, b.attempts), (BranchState::Succeeded, 1), "{step}");
    }
    // b's request was built from a's output, in the write of a's success
    let b = record.branch(&"b".parse_id(), Op::Action).unwrap();
    assert_eq!(b.request, json!({ "after": { "by": "a" } }));
    let order: Vec<&str> = record.branches.iter().map(|b| b.branch.as_str()).collect();
    assert_eq!(order, ["a", "b", "c"]);
}

/// Starts `saga` as `id` on a coordinator that dies right after its first
/// write (the create, which logs the first steps' `Sent` before anything
/// is sent).
async fn crash_after_create(store: &Arc<dyn TxStore>, script: &Script, saga: &Saga, id: &TxId) {
    let switch = rampart_transaction::testing::CrashSwitch::new();
    let faulty = FaultyStore::new(Arc::clone(store)).crash_after_write(switch.clone(), Some(1));
    let doomed = coordinator(Arc::new(faulty), script);
    tokio::select! {
        biased;
        () = switch.crashed() => {}
        _ = doomed.start_with_id(saga, id.clone(), json!({})) => panic!("it did not crash"),
    }
    // its lease runs out
    store.release(id, doomed.owner()).await.unwrap();
}

// real time: the deadline is logged in wall-clock time
#[tokio::test]
async fn a_sent_logged_ahead_that_survives_a_crash_is_in_doubt_to_recovery() {
    let store = memory();
    let script = Script::ok();
    let recovery = coordinator(Arc::clone(&store), &script);
    let chain_of = |timeout: Option<Duration>| {
        let mut b = Saga::builder("ahead")
            .step(Step::new("a", "p"))
            .step(Step::new("b", "p").after(["a"]));
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    };

    // recovered in time: `a` is re-sent, as a second attempt
    let id = TxId::new("ahead-1").unwrap();
    crash_after_create(&store, &script, &chain_of(None), &id).await;
    assert_eq!(script.count("a:action"), 0);
    let left = store.load(&id).await.unwrap().unwrap();
    let a = left.branch(&"a".parse_id(), Op::Action).unwrap();
    assert_eq!((a.state, a.attempts), (BranchState::Sent, 1));
    assert_eq!(recovery.recover_once().await.unwrap().committed, 1);
    assert_eq!(script.count("a:action"), 1);
    let record = recovery.inspect(&id).await.unwrap();
    let a = record.branch(&"a".parse_id(), Op::Action).unwrap();
    assert_eq!((a.state, a.attempts), (BranchState::Succeeded, 2));

    // recovered past its deadline, the saga compensates: as far as the log
    // knows `a` may have run, so it is compensated (an empty compensation)
    // and never sent
    let id = TxId::new("ahead-2").unwrap();
    crash_after_create(
        &store,
        &script,
        &chain_of(Some(Duration::from_millis(1))),
        &id,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(recovery.recover_once().await.unwrap().aborted, 1);
    assert_eq!(script.count("a:action"), 1, "only the first saga's");
    assert_eq!(script.count("a:compensate"), 1);
    let record = recovery.inspect(&id).await.unwrap();
    assert!(record.reason.unwrap().contains("global timeout"));
}

#[tokio::test(start_paused = true)]
async fn a_step_logged_sent_ahead_is_not_sent_once_the_deadline_passed() {
    // every write takes 1 s. The deadline is 5 s from when the run starts
    // driving, at 1 s (the paused clock leaves the wall clock it is logged
    // in behind): 6 s. `a` answers at 5.5 s, in time, so its success logs
    // `b`'s Sent; that write ends at 6.5 s, past the deadline
    let faulty = Arc::new(FaultyStore::new(memory()).delay_writes(Duration::from_secs(1)));
    let script = slow_millis("a", 4_500);
    let c = coordinator(faulty, &script);
    let saga = Saga::builder("late")
        .step(Step::new("a", "p"))
        .step(Step::new("b", "p").after(["a"]))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let outcome = c.start(&saga, json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Aborted);
    assert!(outcome.reason.unwrap().contains("global timeout"));
    assert_eq!(script.count("b:action"), 0);
    assert_eq!(script.count("a:compensate"), 1);
    // logged unsent in the `Aborting` write: nothing to compensate
    assert_eq!(script.count("b:compensate"), 0);
    let record = c.inspect(&outcome.id).await.unwrap();
    let b = record.branch(&"b".parse_id(), Op::Action).unwrap();
    assert_eq!((b.state, b.attempts), (BranchState::Failed, 0));
    assert!(b.error.as_deref().unwrap().contains("not sent"), "{b:?}");
}

// === the store going away ===

#[tokio::test(start_paused = true)]
async fn a_store_that_cannot_log_the_start_fails_it_and_nothing_is_called() {
    let faulty = Arc::new(FaultyStore::new(memory()));
    faulty.set_down(true);
    let script = Script::ok();
    let c = coordinator(faulty.clone(), &script);
    let err = c.start(&chain(&["a", "b"]), json!({})).await.unwrap_err();
    assert!(
        matches!(err, TxError::Store(StoreError::Unavailable(_))),
        "{err}"
    );
    assert!(script.calls().is_empty());
    faulty.set_down(false);
    assert!(c.list(&TxFilter::default()).await.unwrap().is_empty());

    // an unknown participant is refused before anything is logged
    let saga = Saga::builder("x")
        .step(Step::new("a", "nobody"))
        .build()
        .unwrap();
    assert!(matches!(
        c.start(&saga, json!({})).await,
        Err(TxError::UnknownParticipant { .. })
    ));
    assert!(c.list(&TxFilter::default()).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_store_failing_mid_run_pauses_the_run_which_resumes_without_loss() {
    let faulty = Arc::new(FaultyStore::new(memory()));
    let script = Script::new({
        let faulty = Arc::clone(&faulty);
        move |call, _| {
            if call.branch.as_str() == "b" {
                // the store fails the next 4 writes (b's result with c's Sent, 4 times)
                faulty.fail_commits(4);
            }
            (Duration::ZERO, Ok(Value::Null))
        }
    });
    let c = coordinator(faulty.clone(), &script);
    let started = Instant::now();
    let outcome = c.start(&chain(&["a", "b", "c"]), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    assert_eq!(faulty.failed(), 4);
    // four backoffs of 100 ms
    assert_eq!(started.elapsed(), Duration::from_millis(400));
    for step in ["a", "b", "c"] {
        assert_eq!(script.count(&format!("{step}:action")), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_down_longer_than_the_lease_interrupts_the_run_and_recovery_finishes_it() {
    let faulty = Arc::new(FaultyStore::new(memory()));
    let script = Script::new({
        let faulty = Arc::clone(&faulty);
        move |call, n| {
            if call.branch.as_str() == "a" && n == 1 {
                faulty.set_down(true);
            }
            (Duration::ZERO, Ok(Value::Null))
        }
    });
    let c = Coordinator::new(faulty.clone(), config().lease(Duration::from_secs(2)))
        .unwrap()
        .participant("p", script.participant());
    let id = TxId::new("down-long").unwrap();
    let err = c
        .start_with_id(&chain(&["a", "b"]), id.clone(), json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, TxError::Interrupted { .. }), "{err}");
    faulty.set_down(false);
    // the lease stays until it runs out on the wall clock (paused time does
    // not move it): stand in for that wait by releasing it
    faulty.release(&id, c.owner()).await.unwrap();
    let report = c.recover_once().await.unwrap();
    assert_eq!(report.committed, 1, "{report:?}");
    // a was in doubt (its result was never logged): re-sent once, b once
    assert_eq!(script.count("a:action"), 2);
    assert_eq!(script.count("b:action"), 1);
}

// === corrupt records ===

#[tokio::test(start_paused = true)]
async fn corrupt_records_are_parked_and_the_others_recovered() {
    let faulty = Arc::new(FaultyStore::new(memory()));
    let store: Arc<dyn TxStore> = faulty.clone();
    let record = left_behind;
    let good_plan = chain(&["a", "b"]).plan_value();
    for r in [
        record("bad-plan", json!({ "garbage": true })),
        record("bad-row", good_plan.clone()),
        record("good", good_plan),
    ] {
        // logged by a coordinator that died at once: lease already over
        store.create(&r, "dead", Duration::ZERO).await.unwrap();
    }
    faulty.corrupt(&TxId::new("bad-row").unwrap());
    let script = Script::ok();
    let c = coordinator(store.clone(), &script);
    let report = c.recover_once().await.unwrap();
    assert_eq!(report.claimed, 3);
    assert_eq!(report.committed, 1);
    assert_eq!(report.parked.len(), 2, "{report:?}");
    let parked = parked(&c).await;
    let reasons: Vec<_> = parked.iter().map(|s| s.reason.clone().unwrap()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("plan in the log does not decode")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("record does not decode")),
        "{reasons:?}"
    );
    assert_eq!(script.count("a:action"), 1);
    assert_eq!(c.recover_once().await.unwrap().claimed, 0);
}

// === recovery and builders ===

#[tokio::test(start_paused = true)]
async fn recovery_without_the_saga_registered_compensates_a_step_it_cannot_build() {
    let store = memory();
    let script = Script::ok();
    let saga = Saga::builder("built")
        .step(Step::new("a", "p"))
        .step(
            Step::new("b", "p")
                .after(["a"])
                .request(|_, out| out["a"].clone()),
        )
        .build()
        .unwrap();
    // a succeeded, then the coordinator died before b's request was built
    let now = now_ms();
    let mut r = left_behind("orphan", saga.plan_value());
    r.branches.push(rampart_transaction::model::BranchRecord {
        branch: "a".parse_id(),
        op: Op::Action,
        state: BranchState::Succeeded,
        request: json!({}),
        output: Some(json!("out-a")),
        error: None,
        attempts: 1,
        updated_at: now,
    });
    store.create(&r, "dead", Duration::ZERO).await.unwrap();
    let bare = coordinator(store.clone(), &script);
    bare.recover_once().await.unwrap();
    let record = bare.inspect(&r.id).await.unwrap();
    assert_eq!(record.state, TxState::Aborted);
    assert!(record.reason.unwrap().contains("builder is not registered"));
    assert_eq!(script.calls(), ["a:compensate"]);

    // with the saga registered, recovery builds b's request from the logged output
    let mut r2 = r.clone();
    r2.id = TxId::new("orphan-2").unwrap();
    store.create(&r2, "dead", Duration::ZERO).await.unwrap();
    let registered = coordinator(store.clone(), &script).saga(saga);
    let report = registered.recover_once().await.unwrap();
    assert_eq!(report.committed, 1);
    let record = registered.inspect(&r2.id).await.unwrap();
    assert_eq!(
        record.branch(&"b".parse_id(), Op::Action).unwrap().request,
        json!("out-a")
    );
}

#[tokio::test(start_paused = true)]
async fn the_recovery_loop_finishes_what_a_dead_coordinator_left() {
    let store = memory();
    let r = left_behind("left-behind", chain(&["a", "b"]).plan_value());
    store.create(&r, "dead", Duration::ZERO).await.unwrap();
    let script = Script::ok();
    let c = coordinator(store, &script);
    let looping = tokio::spawn({
        let c = c.clone();
        async move { c.run_recovery(Duration::from_secs(1)).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(c.inspect(&r.id).await.unwrap().state, TxState::Committed);
    looping.abort();
}

// === two coordinators ===

#[tokio::test]
async fn two_coordinators_never_both_drive_one_transaction() {
    let store = memory();
    let ledger = EffectLedger::new();
    let gate = Arc::new(tokio::sync::Notify::new());
    let first_b = Arc::new(std::sync::atomic::AtomicBool::new(true));
    // b's first call (from coordinator A) hangs until the gate opens
    let gated = {
        let (gate, first_b, inner) = (
            Arc::clone(&gate),
            Arc::clone(&first_b),
            ledger.participant(),
        );
        participant(tower::service_fn(move |call: BranchCall| {
            let (gate, first_b, inner) = (Arc::clone(&gate), Arc::clone(&first_b), inner.clone());
            async move {
                use tower::ServiceExt;
                if call.branch.as_str() == "b"
                    && first_b.swap(false, std::sync::atomic::Ordering::SeqCst)
                {
                    gate.notified().await;
                }
                inner.oneshot(call).await
            }
        }))
    };
    let lease = Duration::from_millis(200);
    // A reaches the store through a link the test can cut
    let link = Arc::new(FaultyStore::new(Arc::clone(&store)));
    let a = Coordinator::new(link.clone(), config().owner("A").lease(lease))
        .unwrap()
        .participant("p", gated.clone());
    let b = Coordinator::new(Arc::clone(&store), config().owner("B").lease(lease))
        .unwrap()
        .participant("p", gated);
    let saga = chain(&["a", "b", "c"]);
    let id = TxId::new("shared").unwrap();
    let run_a = {
        let (a, saga, id) = (a.clone(), saga.clone(), id.clone());
        tokio::spawn(async move { a.start_with_id(&saga, id, json!({})).await })
    };
    // A holds the lease, and keeps renewing it while it waits on b: B
    // claims nothing, even after the lease's length
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.recover_once().await.unwrap().claimed, 0);
    // A loses the store: its lease runs out, B takes over and finishes
    link.set_down(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = b.recover_once().await.unwrap();
    assert_eq!(report.committed, 1, "{report:?}");
    // A gets the store back and its answer: its next write meets B's
    // version (or B's lease) and it stops
    link.set_down(false);
    gate.notify_one();
    let err = run_a.await.unwrap().unwrap_err();
    assert!(matches!(err, TxError::Interrupted { .. }), "{err}");
    let record = b.inspect(&id).await.unwrap();
    assert_eq!(record.state, TxState::Committed);
    ledger.check(&record).unwrap();
    assert_eq!(ledger.applied(&id).len(), 3);
}

// === metrics ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn metrics_count_runs_by_state_and_calls_by_outcome() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let script = refuse("b");
    let c = coordinator(memory(), &script);
    c.start(&chain(&["a"]), json!({})).await.unwrap();
    c.start(&chain(&["a", "b"]), json!({})).await.unwrap();
    let name = ("name", "test");
    assert_eq!(
        recorder
            .get("rampart_transaction_started_total", &[name])
            .counter(),
        2
    );
    assert_eq!(
        recorder
            .get(
                "rampart_transaction_finished_total",
                &[name, ("state", "committed")]
            )
            .counter(),
        1
    );
    assert_eq!(
        recorder
            .get(
                "rampart_transaction_finished_total",
                &[name, ("state", "aborted")]
            )
            .counter(),
        1
    );
    assert_eq!(
        recorder
            .get(
                "rampart_transaction_branch_calls_total",
                &[name, ("op", "action"), ("outcome", "success")]
            )
            .counter(),
        2
    );
    assert_eq!(
        recorder
            .get(
                "rampart_transaction_branch_calls_total",
                &[name, ("op", "action"), ("outcome", "terminal")]
            )
            .counter(),
        1
    );
}

//! 3PC: the coordinator's engine (CanCommit, PreCommit, DoCommit; abort on
//! a no vote or a failed PreCommit; the global timeout on the votes), and
//! `ThreePhaseParticipant`'s state machine with its timeouts, alone and
//! behind a coordinator (including a split it reports for intervention).

#[path = "common/script.rs"]
mod script;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_core::{BoxError, BoxFuture};
use rampart_transaction::coordinator::Coordinator;
use rampart_transaction::model::{BranchId, Decision, Op, TxId, TxState};
use rampart_transaction::participant::{BranchCall, BranchError, participant};
use rampart_transaction::three_phase::{
    Branch, DefinitionError, Resource, ThreePhase, ThreePhaseParticipant, ThreePhaseState,
};
use script::{Script, config, coordinator, memory};
use serde_json::{Value, json};
use tower::ServiceExt;

fn abc(timeout: Option<Duration>) -> ThreePhase {
    let mut b = ThreePhase::builder("abc")
        .branch(Branch::new("a", "p"))
        .branch(Branch::new("b", "p"))
        .branch(Branch::new("c", "p"));
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().unwrap()
}

/// Answers `null` to every call but `op` of `branch`, which it refuses.
fn refusing(branch: &'static str, op: Op, why: &'static str) -> Script {
    Script::new(move |call, _| {
        let answer = if call.branch.as_str() == branch && call.op == op {
            Err(BranchError::terminal(why))
        } else {
            Ok(Value::Null)
        };
        (Duration::ZERO, answer)
    })
}

fn ops_of(script: &Script, branch: &str) -> Vec<String> {
    script
        .calls()
        .into_iter()
        .filter_map(|k| k.strip_prefix(&format!("{branch}:")).map(str::to_owned))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn all_yes_pre_commits_every_branch_before_the_commit_decision() {
    let script = Script::ok();
    let c = coordinator(memory(), &script);
    let outcome = c.start_three_phase(&abc(None), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    assert_eq!(outcome.outputs["a"], json!({ "by": "a" }));
    for b in ["a", "b", "c"] {
        assert_eq!(ops_of(&script, b), ["can_commit", "pre_commit", "commit"]);
    }
    // every PreCommit ended before the first DoCommit started
    let last_pre = ["a", "b", "c"]
        .map(|b| script.call(&format!("{b}:pre_commit")).1)
        .into_iter()
        .max()
        .unwrap();
    let first_commit = ["a", "b", "c"]
        .map(|b| script.call(&format!("{b}:commit")).0)
        .into_iter()
        .min()
        .unwrap();
    assert!(last_pre <= first_commit);
    assert_eq!(
        c.decision(&outcome.id).await.unwrap(),
        Some(Decision::Commit)
    );
}

#[tokio::test(start_paused = true)]
async fn a_no_vote_aborts_without_pre_commit_and_rolls_back_the_yes_voters() {
    let script = refusing("b", Op::CanCommit, "no");
    let c = coordinator(memory(), &script);
    let outcome = c.start_three_phase(&abc(None), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Aborted);
    assert!(outcome.reason.unwrap().contains("refused"));
    assert_eq!(ops_of(&script, "a"), ["can_commit", "rollback"]);
    // a refused vote had no effect: nothing to roll back
    assert_eq!(ops_of(&script, "b"), ["can_commit"]);
    assert_eq!(ops_of(&script, "c"), ["can_commit", "rollback"]);
    assert_eq!(
        c.decision(&outcome.id).await.unwrap(),
        Some(Decision::Abort)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_pre_commit_aborts_and_rolls_back_every_branch() {
    let script = refusing("c", Op::PreCommit, "aborted on its own");
    let c = coordinator(memory(), &script);
    let outcome = c.start_three_phase(&abc(None), json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Aborted);
    for b in ["a", "b", "c"] {
        assert_eq!(ops_of(&script, b), ["can_commit", "pre_commit", "rollback"]);
    }
    assert_eq!(script.count("a:commit"), 0);
}

#[tokio::test(start_paused = true)]
async fn the_global_timeout_bounds_the_votes_and_aborts() {
    let script = Script::new(|call, _| {
        let slow = call.branch.as_str() == "c" && call.op == Op::CanCommit;
        (
            Duration::from_secs(if slow { 60 } else { 0 }),
            Ok(Value::Null),
        )
    });
    let c = coordinator(memory(), &script);
    let started = tokio::time::Instant::now();
    let outcome = c
        .start_three_phase(&abc(Some(Duration::from_secs(5))), json!({}))
        .await
        .unwrap();
    assert_eq!(outcome.state, TxState::Aborted);
    assert!(outcome.reason.unwrap().contains("global timeout"));
    // the vote was cut at the deadline, not at its 30 s attempt timeout
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(script.count("a:pre_commit"), 0);
    // c's vote is in doubt: it is rolled back too
    for b in ["a", "b", "c"] {
        assert_eq!(script.count(&format!("{b}:rollback")), 1, "{b}");
    }
}

#[test]
fn a_zero_global_timeout_is_refused() {
    let err = ThreePhase::builder("t")
        .branch(Branch::new("a", "p"))
        .timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err, DefinitionError::ZeroGlobalTimeout);
}

// === ThreePhaseParticipant ===

/// A resource that records what it did and can be told to vote no, fail
/// its PreCommit or fail its first commits.
#[derive(Clone, Default)]
struct Recorder {
    done: Arc<Mutex<Vec<String>>>,
    vote_no: bool,
    pre_commit_delay: Duration,
    pre_commit_fails: bool,
    commit_failures: Arc<Mutex<u32>>,
}

impl Recorder {
    fn note(&self, what: &str) {
        self.done.lock().unwrap().push(what.to_owned());
    }

    fn done(&self) -> Vec<String> {
        self.done.lock().unwrap().clone()
    }
}

impl Resource for Recorder {
    fn can_commit<'a>(&'a self, _: &'a BranchCall) -> BoxFuture<'a, Result<Value, BranchError>> {
        Box::pin(async move {
            self.note("can_commit");
            if self.vote_no {
                Err(BranchError::terminal("insufficient funds"))
            } else {
                Ok(json!("yes"))
            }
        })
    }

    fn pre_commit<'a>(&'a self, _: &'a BranchCall) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            tokio::time::sleep(self.pre_commit_delay).await;
            self.note("pre_commit");
            if self.pre_commit_fails {
                Err("disk full".into())
            } else {
                Ok(())
            }
        })
    }

    fn commit<'a>(&'a self, _: &'a TxId, _: &'a BranchId) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let mut failures = self.commit_failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err("commit failed".into());
            }
            drop(failures);
            self.note("commit");
            Ok(())
        })
    }

    fn abort<'a>(&'a self, _: &'a TxId, _: &'a BranchId) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.note("abort");
            Ok(())
        })
    }
}

fn ids() -> (TxId, BranchId) {
    (TxId::new("t1").unwrap(), BranchId::new("b1").unwrap())
}

async fn send(p: &ThreePhaseParticipant<Recorder>, op: Op) -> Result<Value, BranchError> {
    let (tx, branch) = ids();
    let call = BranchCall {
        tx,
        branch,
        op,
        payload: Value::Null,
    };
    p.clone()
        .oneshot(call)
        .await
        .map_err(|e| *e.downcast::<BranchError>().expect("a BranchError"))
}

async fn state(p: &ThreePhaseParticipant<Recorder>) -> Option<ThreePhaseState> {
    let (tx, branch) = ids();
    p.state(&tx, &branch).await
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test(start_paused = true)]
async fn the_participant_walks_vote_pre_commit_commit_and_answers_repeats_alike() {
    let r = Recorder::default();
    let p = ThreePhaseParticipant::new(r.clone());
    assert_eq!(send(&p, Op::CanCommit).await.unwrap(), json!("yes"));
    assert_eq!(send(&p, Op::CanCommit).await.unwrap(), json!("yes"));
    assert_eq!(state(&p).await, Some(ThreePhaseState::Voted));
    send(&p, Op::PreCommit).await.unwrap();
    send(&p, Op::PreCommit).await.unwrap();
    assert_eq!(state(&p).await, Some(ThreePhaseState::PreCommitted));
    send(&p, Op::Commit).await.unwrap();
    send(&p, Op::Commit).await.unwrap();
    assert_eq!(
        state(&p).await,
        Some(ThreePhaseState::Committed { by_timeout: false })
    );
    // each resource step ran once; no timer fired after the transitions
    tokio::time::advance(secs(120)).await;
    assert_eq!(r.done(), ["can_commit", "pre_commit", "commit"]);
}

#[tokio::test(start_paused = true)]
async fn a_voted_branch_aborts_on_its_own_after_the_wait_timeout() {
    let r = Recorder::default();
    let p = ThreePhaseParticipant::new(r.clone()).wait_timeout(secs(10));
    send(&p, Op::CanCommit).await.unwrap();
    tokio::time::sleep(secs(9)).await;
    assert_eq!(state(&p).await, Some(ThreePhaseState::Voted));
    tokio::time::sleep(secs(2)).await;
    assert_eq!(
        state(&p).await,
        Some(ThreePhaseState::Aborted { by_timeout: true })
    );
    assert_eq!(r.done(), ["can_commit", "abort"]);
    // a late PreCommit is refused for good; the rollback is a no-op
    let late = send(&p, Op::PreCommit).await.unwrap_err();
    assert!(late.message().contains("aborted on its own"), "{late}");
    assert_eq!(send(&p, Op::Rollback).await.unwrap(), Value::Null);
    assert_eq!(r.done(), ["can_commit", "abort"]);
}

#[tokio::test(start_paused = true)]
async fn a_pre_committed_branch_commits_on_its_own_and_refuses_a_late_rollback() {
    let r = Recorder::default();
    let p = ThreePhaseParticipant::new(r.clone())
        .wait_timeout(secs(10))
        .commit_timeout(secs(20));
    send(&p, Op::CanCommit).await.unwrap();
    tokio::time::sleep(secs(5)).await;
    send(&p, Op::PreCommit).await.unwrap();
    // the wait timeout (at 10 s) was disarmed by the PreCommit
    tokio::time::sleep(secs(19)).await;
    assert_eq!(state(&p).await, Some(ThreePhaseState::PreCommitted));
    tokio::time::sleep(secs(2)).await;
    assert_eq!(
        state(&p).await,
        Some(ThreePhaseState::Committed { by_timeout: true })
    );
    assert_eq!(r.done(), ["can_commit", "pre_commit", "commit"]);
    let split = send(&p, Op::Rollback).await.unwrap_err();
    assert!(split.message().contains("committed on its own"), "{split}");
    // a late DoCommit agrees
    send(&p, Op::Commit).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_timeout_commit_that_fails_is_retried_until_it_succeeds() {
    let r = Recorder {
        commit_failures: Arc::new(Mutex::new(2)),
        ..Recorder::default()
    };
    let p = ThreePhaseParticipant::new(r.clone())
        .commit_timeout(secs(10))
        .retry_interval(secs(3));
    send(&p, Op::CanCommit).await.unwrap();
    send(&p, Op::PreCommit).await.unwrap();
    // fails at 10 s and at 13 s: still pre-committed at 14 s
    tokio::time::sleep(secs(14)).await;
    assert_eq!(state(&p).await, Some(ThreePhaseState::PreCommitted));
    // the third try, at 16 s, succeeds
    tokio::time::sleep(secs(3)).await;
    assert_eq!(
        state(&p).await,
        Some(ThreePhaseState::Committed { by_timeout: true })
    );
    assert_eq!(r.done(), ["can_commit", "pre_commit", "commit"]);
}

#[tokio::test(start_paused = true)]
async fn a_no_vote_sticks_and_an_empty_rollback_refuses_a_late_vote() {
    let r = Recorder {
        vote_no: true,
        ..Recorder::default()
    };
    let p = ThreePhaseParticipant::new(r.clone());
    let no = send(&p, Op::CanCommit).await.unwrap_err();
    assert!(no.message().contains("insufficient funds"));
    let again = send(&p, Op::CanCommit).await.unwrap_err();
    assert_eq!(again.message(), no.message());
    assert_eq!(send(&p, Op::Rollback).await.unwrap(), Value::Null);
    assert_eq!(r.done(), ["can_commit"]);

    // a rollback before any vote: the late CanCommit is refused, not run
    let r = Recorder::default();
    let p = ThreePhaseParticipant::new(r.clone());
    assert_eq!(send(&p, Op::Rollback).await.unwrap(), Value::Null);
    let hanging = send(&p, Op::CanCommit).await.unwrap_err();
    assert!(hanging.message().contains("aborted"), "{hanging}");
    assert!(r.done().is_empty());
}

#[tokio::test(start_paused = true)]
async fn out_of_order_calls_are_refused_and_leave_nothing_behind() {
    let r = Recorder::default();
    let p = ThreePhaseParticipant::new(r.clone());
    let e = send(&p, Op::PreCommit).await.unwrap_err();
    assert!(e.message().contains("unknown to this participant"), "{e}");
    assert_eq!(state(&p).await, None);
    send(&p, Op::CanCommit).await.unwrap();
    let e = send(&p, Op::Commit).await.unwrap_err();
    assert!(e.message().contains("voted"), "{e}");
    let e = send(&p, Op::Try).await.unwrap_err();
    assert!(e.message().contains("not a 3PC operation"), "{e}");
    assert_eq!(r.done(), ["can_commit"]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_pre_commit_is_retryable_and_finished_branches_are_forgotten() {
    let r = Recorder {
        pre_commit_fails: true,
        ..Recorder::default()
    };
    let p = ThreePhaseParticipant::new(r.clone()).remember(secs(60));
    send(&p, Op::CanCommit).await.unwrap();
    let e = send(&p, Op::PreCommit).await.unwrap_err();
    assert_eq!(
        e.kind(),
        rampart_transaction::participant::FailureKind::Retryable
    );
    assert_eq!(state(&p).await, Some(ThreePhaseState::Voted));
    send(&p, Op::Rollback).await.unwrap();
    assert_eq!(
        state(&p).await,
        Some(ThreePhaseState::Aborted { by_timeout: false })
    );
    tokio::time::sleep(secs(61)).await;
    assert_eq!(state(&p).await, None);
}

#[tokio::test(start_paused = true)]
async fn concurrent_repeats_run_the_resource_once() {
    let r = Recorder {
        pre_commit_delay: secs(1),
        ..Recorder::default()
    };
    let p = ThreePhaseParticipant::new(r.clone());
    send(&p, Op::CanCommit).await.unwrap();
    let (a, b) = tokio::join!(send(&p, Op::PreCommit), send(&p, Op::PreCommit));
    assert_eq!(a.unwrap(), b.unwrap());
    assert_eq!(r.done(), ["can_commit", "pre_commit"]);
}

// === behind a coordinator ===

#[tokio::test(start_paused = true)]
async fn a_coordinator_commits_through_three_phase_participants() {
    let (ra, rb) = (Recorder::default(), Recorder::default());
    let (pa, pb) = (
        ThreePhaseParticipant::new(ra.clone()),
        ThreePhaseParticipant::new(rb.clone()),
    );
    let c = Coordinator::new(memory(), config())
        .unwrap()
        .participant("a", participant(pa.clone()))
        .participant("b", participant(pb.clone()));
    let tx = ThreePhase::builder("pair")
        .branch(Branch::new("a", "a"))
        .branch(Branch::new("b", "b"))
        .build()
        .unwrap();
    let outcome = c.start_three_phase(&tx, json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    for (p, r, b) in [(&pa, &ra, "a"), (&pb, &rb, "b")] {
        let state = p.state(&outcome.id, &BranchId::new(b).unwrap()).await;
        assert_eq!(
            state,
            Some(ThreePhaseState::Committed { by_timeout: false })
        );
        assert_eq!(r.done(), ["can_commit", "pre_commit", "commit"]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_vote_lets_a_waiting_participant_abort_and_the_coordinator_follows() {
    // a votes at once and waits 5 s for its PreCommit; b takes 10 s to vote
    let ra = Recorder::default();
    let pa = ThreePhaseParticipant::new(ra.clone()).wait_timeout(secs(5));
    let slow_vote = Script::new(|call, _| {
        let secs = if call.op == Op::CanCommit { 10 } else { 0 };
        (Duration::from_secs(secs), Ok(Value::Null))
    });
    let c = Coordinator::new(memory(), config())
        .unwrap()
        .participant("a", participant(pa))
        .participant("b", slow_vote.participant());
    let tx = ThreePhase::builder("pair")
        .branch(Branch::new("a", "a"))
        .branch(Branch::new("b", "b"))
        .build()
        .unwrap();
    let outcome = c.start_three_phase(&tx, json!({})).await.unwrap();
    // a's refused PreCommit turned the decision to abort: consistent
    assert_eq!(outcome.state, TxState::Aborted);
    assert!(outcome.reason.unwrap().contains("aborted on its own"));
    assert_eq!(ra.done(), ["can_commit", "abort"]);
    assert_eq!(
        slow_vote.calls(),
        ["b:can_commit", "b:pre_commit", "b:rollback"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_split_is_parked_for_intervention_with_the_reason() {
    // a pre-commits and commits on its own after 5 s; b's PreCommit takes
    // 10 s and fails, so the coordinator decides abort too late for a
    let ra = Recorder::default();
    let pa = ThreePhaseParticipant::new(ra.clone()).commit_timeout(secs(5));
    let rb = Recorder {
        pre_commit_delay: secs(10),
        pre_commit_fails: true,
        ..Recorder::default()
    };
    let pb = ThreePhaseParticipant::new(rb.clone());
    let c = Coordinator::new(memory(), config().max_attempts(1))
        .unwrap()
        .participant("a", participant(pa))
        .participant("b", participant(pb));
    let tx = ThreePhase::builder("pair")
        .branch(Branch::new("a", "a"))
        .branch(Branch::new("b", "b"))
        .build()
        .unwrap();
    let outcome = c.start_three_phase(&tx, json!({})).await.unwrap();
    assert_eq!(outcome.state, TxState::NeedsIntervention);
    let reason = outcome.reason.unwrap();
    assert!(reason.contains("committed on its own"), "{reason}");
    assert_eq!(ra.done(), ["can_commit", "pre_commit", "commit"]);
    assert_eq!(rb.done(), ["can_commit", "pre_commit", "abort"]);
    let record = c.inspect(&outcome.id).await.unwrap();
    assert_eq!(record.decision, Some(Decision::Abort));
}

#[tokio::test(start_paused = true)]
async fn restored_branches_resume_their_timers_after_a_restart() {
    let r = Recorder::default();
    let p = ThreePhaseParticipant::new(r.clone())
        .wait_timeout(secs(10))
        .commit_timeout(secs(20));
    let (tx, branch) = ids();
    // pre-committed before the restart: commits on its own, 20 s from now
    assert!(
        p.restore(
            tx.clone(),
            branch.clone(),
            ThreePhaseState::PreCommitted,
            json!("yes")
        )
        .await
    );
    // known now: a second restore changes nothing
    assert!(
        !p.restore(
            tx.clone(),
            branch.clone(),
            ThreePhaseState::Voted,
            json!("no")
        )
        .await
    );
    assert_eq!(send(&p, Op::CanCommit).await.unwrap(), json!("yes"));
    tokio::time::sleep(secs(21)).await;
    assert_eq!(
        state(&p).await,
        Some(ThreePhaseState::Committed { by_timeout: true })
    );
    assert_eq!(r.done(), ["commit"]);

    // voted before the restart: a PreCommit goes on from there
    let other = BranchId::new("b2").unwrap();
    assert!(
        p.restore(
            tx.clone(),
            other.clone(),
            ThreePhaseState::Voted,
            json!("yes")
        )
        .await
    );
    let pre = BranchCall {
        tx: tx.clone(),
        branch: other.clone(),
        op: Op::PreCommit,
        payload: Value::Null,
    };
    p.clone().oneshot(pre).await.unwrap();
    assert_eq!(
        p.state(&tx, &other).await,
        Some(ThreePhaseState::PreCommitted)
    );
}

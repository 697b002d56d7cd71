//! The TCC / 2PC / 3PC engine: drives one transaction from its log record,
//! whether the run was just started or is recovered.
//!
//! Phase one (try / prepare / CanCommit) runs only in the run that started
//! the transaction. A transaction recovered before its decision was logged
//! is aborted (presumed abort): every branch whose phase one ran or may
//! have run is cancelled / rolled back; phase one is never re-sent after a
//! crash, so no try, prepare or CanCommit can arrive after its undo.
//!
//! 3PC adds PreCommit between the votes and the decision. Once a PreCommit
//! may have been sent (one is logged), a recovered transaction goes
//! forward instead: the PreCommits are (re)sent and, when every branch
//! acknowledged, commit is decided. A pre-committed participant commits on
//! its own when it hears nothing, so aborting then would split the
//! outcome; going forward only splits it if a participant already aborted
//! on its own, which its refused PreCommit reveals (then abort).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Definition, Ops, PhasedPlan};
use crate::coordinator::{
    BranchSpec, CallEnd, Halt, Inner, Pending, Published, TxLog, call_branch, deadline_of,
    next_done, park, read, shared,
};
use crate::model::{BranchState, Decision, Op, TxRecord, TxState, outputs};
use crate::store::{TxUpdate, Write};

/// Drives the TCC, 2PC or 3PC transaction in `record` (leased to this
/// coordinator) to a terminal or parked state. `fresh` is the definition
/// when this run just created the transaction (phase one runs), `None`
/// when it is recovered.
pub(crate) async fn drive(
    inner: &Inner,
    record: TxRecord,
    fresh: Option<&Definition>,
) -> Result<TxRecord, Halt> {
    let Some(ops) = Ops::of(record.protocol) else {
        let reason = format!("no phased engine for {}", record.protocol.as_str());
        return park(inner, record, reason).await;
    };
    let plan: PhasedPlan = match serde_json::from_value(record.plan.clone()) {
        Ok(plan) => plan,
        Err(e) => {
            let reason = format!(
                "the {} plan in the log does not decode: {e}",
                record.protocol.as_str()
            );
            return park(inner, record, reason).await;
        }
    };
    for b in &plan.branches {
        for p in [&b.participant, &b.commit, &b.undo] {
            if !inner.has_participant(p) {
                let reason = format!(
                    "branch {} names participant {p:?}, not registered on this coordinator",
                    b.id
                );
                return park(inner, record, reason).await;
            }
        }
    }
    let state = record.state;
    // 3PC: a logged PreCommit may have reached its participant
    let pre_commit = ops
        .pre
        .filter(|&pre| record.branches.iter().any(|b| b.op == pre));
    let deadline = deadline_of(&record);
    let log = TxLog::new(inner, record);
    let run = Run {
        inner,
        plan,
        ops,
        deadline,
        published: log.published(),
        log: Mutex::new(log),
    };
    match (state, fresh) {
        (TxState::Running, Some(def)) => run.phase_one(def).await,
        (TxState::Running, None) => match pre_commit {
            Some(pre) => run.pre_commit(pre).await,
            None => {
                let reason = "presumed abort: the coordinator stopped before logging a decision";
                run.phase_two(Decision::Abort, Some(reason.to_owned()))
                    .await
            }
        },
        (TxState::Committing, _) => run.phase_two(Decision::Commit, None).await,
        (TxState::Aborting, _) => run.phase_two(Decision::Abort, None).await,
        _ => Ok(read(&run.published)),
    }
}

/// How one branch call ended.
enum End {
    Done,
    Failed(String),
}

struct Run<'c> {
    inner: &'c Inner,
    plan: PhasedPlan,
    ops: Ops,
    /// The global timeout of phase one (and of 3PC's votes), if any.
    deadline: Option<Instant>,
    log: Mutex<TxLog<'c>>,
    /// The record as last written (see [`TxLog::published`]): read it
    /// without the log's lock, which the running calls may be queued for.
    published: Published,
}

impl Run<'_> {
    /// The record as last written, shared (no copy).
    fn snapshot(&self) -> Arc<TxRecord> {
        shared(&self.published)
    }

    fn state(&self, record: &TxRecord, i: usize, op: Op) -> Option<BranchState> {
        record
            .branch(&self.plan.branches[i].id, op)
            .map(|b| b.state)
    }

    /// Phase one on every branch (all at once, or one after the other if
    /// sequential, stopping at the first failure); then (3PC) PreCommit,
    /// and the decision.
    async fn phase_one(&self, def: &Definition) -> Result<TxRecord, Halt> {
        let n = self.plan.branches.len();
        let mut failure: Option<String> = None;
        if self.plan.sequential {
            for i in 0..n {
                if let End::Failed(reason) = self.first(i, def).await? {
                    failure = Some(reason);
                    break;
                }
            }
        } else {
            let mut running: Pending<'_, Result<End, Halt>> = Vec::new();
            for i in 0..n {
                running.push(Box::pin(self.first(i, def)));
            }
            // every call ends (succeeds, is refused or gives up) before the
            // decision: no phase-one call is in flight when phase two starts
            while !running.is_empty() {
                if let End::Failed(reason) = next_done(&mut running).await? {
                    failure.get_or_insert(reason);
                }
            }
        }
        match (failure, self.ops.pre) {
            (Some(reason), _) => self.phase_two(Decision::Abort, Some(reason)).await,
            (None, Some(pre)) => self.pre_commit(pre).await,
            (None, None) => self.phase_two(Decision::Commit, None).await,
        }
    }

    /// 3PC: PreCommit to every branch not yet acknowledged (all at once;
    /// every call ends before the decision); commit if all acknowledged,
    /// else abort. The global timeout does not apply: a pre-committed
    /// participant goes forward on its own, so the coordinator does too.
    async fn pre_commit(&self, pre: Op) -> Result<TxRecord, Halt> {
        let record = self.snapshot();
        let mut running: Pending<'_, Result<End, Halt>> = Vec::new();
        for (i, branch) in self.plan.branches.iter().enumerate() {
            if self.state(&record, i, pre) != Some(BranchState::Succeeded) {
                running.push(Box::pin(self.follow_up(i, pre, &branch.participant)));
            }
        }
        let mut failure: Option<String> = None;
        while !running.is_empty() {
            if let End::Failed(reason) = next_done(&mut running).await? {
                failure.get_or_insert(reason);
            }
        }
        match failure {
            None => self.phase_two(Decision::Commit, None).await,
            Some(reason) => self.phase_two(Decision::Abort, Some(reason)).await,
        }
    }

    /// One phase-one call, with the request built now.
    async fn first(&self, i: usize, def: &Definition) -> Result<End, Halt> {
        let branch = &self.plan.branches[i];
        let record = self.snapshot();
        let first = self.ops.first;
        let outputs = || outputs(&record.branches, |op| op == first);
        let build = || def.builder_of(&branch.id);
        let Some(request) = branch.request.resolve(&record.input, build, outputs) else {
            return Ok(End::Failed(format!(
                "branch {}: its request builder is missing",
                branch.id
            )));
        };
        self.call(
            i,
            self.ops.first,
            &branch.participant,
            request,
            self.deadline,
        )
        .await
    }

    /// Logs `decision` (unless it is logged already), then runs phase two
    /// on every branch that needs it, all at once; commits, aborts or
    /// parks.
    async fn phase_two(
        &self,
        decision: Decision,
        reason: Option<String>,
    ) -> Result<TxRecord, Halt> {
        let state = match decision {
            Decision::Commit => TxState::Committing,
            Decision::Abort => TxState::Aborting,
        };
        let record = self.snapshot();
        if record.state != state || record.decision != Some(decision) {
            tracing::info!(name = %self.inner.config.name, tx = %record.id, ?decision, reason = reason.as_deref().unwrap_or(""), "decided");
            self.log
                .lock()
                .await
                .write(Write {
                    tx: Some(TxUpdate {
                        state: Some(state),
                        decision: Some(decision),
                        reason: reason.map(Some),
                    }),
                    branches: Vec::new(),
                })
                .await?;
        }
        let record = self.snapshot();
        let op = match decision {
            Decision::Commit => self.ops.commit,
            Decision::Abort => self.ops.undo,
        };
        let mut running: Pending<'_, Result<End, Halt>> = Vec::new();
        for i in 0..self.plan.branches.len() {
            let needed = match decision {
                Decision::Commit => true,
                Decision::Abort => self
                    .state(&record, i, self.ops.first)
                    .is_some_and(BranchState::may_have_applied),
            };
            if needed && self.state(&record, i, op) != Some(BranchState::Succeeded) {
                let branch = &self.plan.branches[i];
                let participant = match decision {
                    Decision::Commit => &branch.commit,
                    Decision::Abort => &branch.undo,
                };
                running.push(Box::pin(self.follow_up(i, op, participant)));
            }
        }
        let mut stop: Option<String> = None;
        while !running.is_empty() {
            if let End::Failed(reason) = next_done(&mut running).await? {
                stop.get_or_insert(reason);
            }
        }
        if let Some(reason) = stop {
            return park(self.inner, read(&self.published), reason).await;
        }
        let end = match decision {
            Decision::Commit => TxState::Committed,
            Decision::Abort => TxState::Aborted,
        };
        let mut log = self.log.lock().await;
        let reason = log.record.reason.clone();
        log.write(Write {
            tx: Some(TxUpdate {
                state: Some(end),
                decision: Some(decision),
                reason: Some(reason),
            }),
            branches: Vec::new(),
        })
        .await?;
        Ok(log.record.clone())
    }

    /// A call after phase one (3PC PreCommit, phase two), with
    /// `{"request", "output"}` of phase one.
    async fn follow_up(&self, i: usize, op: Op, participant: &str) -> Result<End, Halt> {
        let branch = &self.plan.branches[i];
        let record = self.snapshot();
        let request = record.follow_up_request(&branch.id, op, self.ops.first);
        self.call(i, op, participant, request, None).await
    }

    /// Calls branch `i` with `op` through the coordinator's logged,
    /// retried branch call; no attempt runs past `deadline`.
    async fn call(
        &self,
        i: usize,
        op: Op,
        participant: &str,
        request: Value,
        deadline: Option<Instant>,
    ) -> Result<End, Halt> {
        let branch = &self.plan.branches[i];
        let spec = BranchSpec {
            branch: &branch.id,
            op,
            participant,
            request,
            timeout: Duration::from_millis(branch.timeout_ms),
            deadline,
            on_success: None,
        };
        Ok(match call_branch(self.inner, &self.log, spec).await? {
            CallEnd::Succeeded(_) => End::Done,
            CallEnd::Refused(e) => {
                End::Failed(format!("{op} of branch {} refused: {e}", branch.id))
            }
            CallEnd::GaveUp { error, .. } => {
                End::Failed(format!("{op} of branch {}: {error}", branch.id))
            }
        })
    }
}

//! The TCC / 2PC engine: drives one transaction from its log record,
//! whether the run was just started or is recovered.
//!
//! Phase one (try / prepare) runs only in the run that started the
//! transaction. A transaction recovered before its decision was logged is
//! aborted (presumed abort): every branch whose phase one ran or may have
//! run is cancelled / rolled back; phase one is never re-sent after a
//! crash, so no try or prepare can arrive after its cancel or rollback.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{Definition, Ops, PhasedPlan};
use crate::coordinator::{
    BranchSpec, CallEnd, Halt, Inner, Pending, Published, TxLog, call_branch, next_done, park, read,
};
use crate::model::{BranchId, BranchState, Decision, Op, TxRecord, TxState};
use crate::saga::PlanRequest;
use crate::store::{TxUpdate, Write};

/// Drives the TCC or 2PC transaction in `record` (leased to this
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
    let log = TxLog::new(inner, record);
    let run = Run {
        inner,
        plan,
        ops,
        published: log.published(),
        log: Mutex::new(log),
    };
    match (state, fresh) {
        (TxState::Running, Some(def)) => run.phase_one(def).await,
        (TxState::Running, None) => {
            let reason = "presumed abort: the coordinator stopped before logging a decision";
            run.phase_two(Decision::Abort, Some(reason.to_owned()))
                .await
        }
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
    log: Mutex<TxLog<'c>>,
    /// The record as last written (see [`TxLog::published`]): read it
    /// without the log's lock, which the running calls may be queued for.
    published: Published,
}

impl Run<'_> {
    fn snapshot(&self) -> TxRecord {
        read(&self.published)
    }

    fn state(&self, record: &TxRecord, i: usize, op: Op) -> Option<BranchState> {
        record
            .branch(&self.plan.branches[i].id, op)
            .map(|b| b.state)
    }

    /// Phase one on every branch (all at once, or one after the other if
    /// sequential, stopping at the first failure); then the decision.
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
        match failure {
            None => self.phase_two(Decision::Commit, None).await,
            Some(reason) => self.phase_two(Decision::Abort, Some(reason)).await,
        }
    }

    /// One phase-one call, with the request built now.
    async fn first(&self, i: usize, def: &Definition) -> Result<End, Halt> {
        let branch = &self.plan.branches[i];
        let record = self.snapshot();
        let request = match &branch.request {
            PlanRequest::Input => record.input.clone(),
            PlanRequest::Value { value } => value.clone(),
            PlanRequest::Builder => {
                let Some(build) = def.builder_of(&branch.id) else {
                    return Ok(End::Failed(format!(
                        "branch {}: its request builder is missing",
                        branch.id
                    )));
                };
                let outputs: BTreeMap<BranchId, Value> = record
                    .branches
                    .iter()
                    .filter(|b| b.op == self.ops.first && b.state == BranchState::Succeeded)
                    .filter_map(|b| Some((b.branch.clone(), b.output.clone()?)))
                    .collect();
                build(&record.input, &outputs)
            }
        };
        self.call(i, self.ops.first, &branch.participant, request)
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
                running.push(Box::pin(self.second(i, decision)));
            }
        }
        let mut stop: Option<String> = None;
        while !running.is_empty() {
            if let End::Failed(reason) = next_done(&mut running).await? {
                stop.get_or_insert(reason);
            }
        }
        if let Some(reason) = stop {
            return park(self.inner, self.snapshot(), reason).await;
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

    /// One phase-two call, with `{"request", "output"}` of phase one.
    async fn second(&self, i: usize, decision: Decision) -> Result<End, Halt> {
        let branch = &self.plan.branches[i];
        let (op, participant) = match decision {
            Decision::Commit => (self.ops.commit, &branch.commit),
            Decision::Abort => (self.ops.undo, &branch.undo),
        };
        let record = self.snapshot();
        let request = match record.branch(&branch.id, op) {
            Some(logged) => logged.request.clone(),
            None => {
                let first = record.branch(&branch.id, self.ops.first);
                json!({
                    "request": first.map_or(Value::Null, |a| a.request.clone()),
                    "output": first.and_then(|a| a.output.clone()).unwrap_or(Value::Null),
                })
            }
        };
        self.call(i, op, participant, request).await
    }

    /// Calls branch `i` with `op` through the coordinator's logged,
    /// retried branch call.
    async fn call(&self, i: usize, op: Op, participant: &str, request: Value) -> Result<End, Halt> {
        let branch = &self.plan.branches[i];
        let spec = BranchSpec {
            branch: &branch.id,
            op,
            participant,
            request,
            timeout: Duration::from_millis(branch.timeout_ms),
            deadline: None,
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

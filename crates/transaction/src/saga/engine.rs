//! The saga engine: drives one saga from its log record, whether the run
//! was just started or is recovered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Graph, PlanRequest, SagaPlan};
use crate::coordinator::{
    BranchSpec, CallEnd, Halt, Inner, Pending, TxLog, call_branch, next_done, park, read,
};
use crate::model::{BranchId, BranchState, Decision, Op, TxRecord, TxState, now_ms};
use crate::saga::Saga;
use crate::store::{TxUpdate, Write};

/// How a step's call (action or compensation) ended.
enum StepEnd {
    Done,
    Failed(String),
}

/// Drives the saga in `record` (leased to this coordinator) to a terminal
/// or parked state.
pub(crate) async fn drive(inner: &Inner, record: TxRecord) -> Result<TxRecord, Halt> {
    let plan: SagaPlan = match serde_json::from_value(record.plan.clone()) {
        Ok(plan) => plan,
        Err(e) => {
            let reason = format!("the saga plan in the log does not decode: {e}");
            return park(inner, record, reason).await;
        }
    };
    let Some((graph, deps)) = index(&plan) else {
        let reason =
            "the saga plan in the log is inconsistent (unknown or cyclic dependencies)".to_owned();
        return park(inner, record, reason).await;
    };
    for step in &plan.steps {
        for p in std::iter::once(&step.action).chain(&step.compensation) {
            if !inner.has_participant(p) {
                let reason = format!(
                    "step {} names participant {p:?}, not registered on this coordinator",
                    step.id
                );
                return park(inner, record, reason).await;
            }
        }
    }
    let after_pivot = match plan.pivot.as_ref().and_then(|p| position(&plan, p)) {
        Some(p) => (0..plan.steps.len()).map(|i| graph.reaches(p, i)).collect(),
        None => vec![false; plan.steps.len()],
    };
    // the logged deadline (wall clock) as a point on tokio's clock
    let deadline = record
        .deadline
        .map(|d| Instant::now() + Duration::from_millis(d.saturating_sub(now_ms())));
    let state = record.state;
    let log = TxLog::new(inner, record);
    let run = Run {
        inner,
        saga: inner.saga(&plan.saga),
        plan,
        graph,
        deps,
        after_pivot,
        deadline,
        published: log.published(),
        log: Mutex::new(log),
    };
    match state {
        TxState::Running | TxState::Committing => run.forward().await,
        TxState::Aborting => run.compensate(None).await,
        _ => Ok(run.snapshot().await),
    }
}

fn position(plan: &SagaPlan, id: &BranchId) -> Option<usize> {
    plan.steps.iter().position(|s| &s.id == id)
}

fn index(plan: &SagaPlan) -> Option<(Graph, Vec<Vec<usize>>)> {
    let deps = plan
        .steps
        .iter()
        .map(|s| {
            s.after
                .iter()
                .map(|a| position(plan, a))
                .collect::<Option<Vec<_>>>()
        })
        .collect::<Option<Vec<_>>>()?;
    Some((Graph::new(&deps)?, deps))
}

struct Run<'c> {
    inner: &'c Inner,
    saga: Option<Saga>,
    plan: SagaPlan,
    graph: Graph,
    deps: Vec<Vec<usize>>,
    after_pivot: Vec<bool>,
    deadline: Option<Instant>,
    log: Mutex<TxLog<'c>>,
    /// The record as last written (see [`TxLog::published`]).
    published: Arc<std::sync::Mutex<TxRecord>>,
}

impl Run<'_> {
    /// The record as last written. Never waits for the log's lock: the
    /// steps running alongside may be queued for it, and they only move
    /// while the caller polls them.
    async fn snapshot(&self) -> TxRecord {
        read(&self.published)
    }

    fn action_state(&self, record: &TxRecord, i: usize) -> Option<BranchState> {
        record
            .branch(&self.plan.steps[i].id, Op::Action)
            .map(|b| b.state)
    }

    /// Runs the actions in dependency order; commits, compensates or parks.
    async fn forward(&self) -> Result<TxRecord, Halt> {
        let n = self.plan.steps.len();
        let mut started = vec![false; n];
        let mut running: Pending<'_, (usize, Result<StepEnd, Halt>)> = Vec::new();
        let mut abort: Option<String> = None;
        let mut stop: Option<String> = None;
        loop {
            let record = self.snapshot().await;
            let passed = record.decision == Some(Decision::Commit);
            if abort.is_none()
                && stop.is_none()
                && !passed
                && self.deadline.is_some_and(|d| Instant::now() >= d)
            {
                abort = Some("global timeout reached before the pivot".to_owned());
            }
            if abort.is_none() && stop.is_none() {
                for (i, started) in started.iter_mut().enumerate() {
                    if *started {
                        continue;
                    }
                    match self.action_state(&record, i) {
                        Some(BranchState::Succeeded) => continue,
                        Some(BranchState::Failed) if !self.after_pivot[i] => {
                            let error = record
                                .branch(&self.plan.steps[i].id, Op::Action)
                                .and_then(|b| b.error.clone())
                                .unwrap_or_default();
                            abort = Some(format!("step {} failed: {error}", self.plan.steps[i].id));
                            break;
                        }
                        _ => {}
                    }
                    let ready = self.deps[i]
                        .iter()
                        .all(|&j| self.action_state(&record, j) == Some(BranchState::Succeeded));
                    if ready {
                        *started = true;
                        let run = self;
                        running.push(Box::pin(async move { (i, run.action(i).await) }));
                    }
                }
            }
            if running.is_empty() {
                let record = self.snapshot().await;
                if let Some(reason) = stop {
                    return park(self.inner, record, reason).await;
                }
                if let Some(reason) = abort {
                    return self.compensate(Some(reason)).await;
                }
                if (0..n).all(|i| self.action_state(&record, i) == Some(BranchState::Succeeded)) {
                    return self.finish(TxState::Committed, None).await;
                }
                return park(
                    self.inner,
                    record,
                    "no step can run and the saga is not done".to_owned(),
                )
                .await;
            }
            let (i, end) = next_done(&mut running).await;
            if let StepEnd::Failed(reason) = end? {
                if self.after_pivot[i] {
                    stop.get_or_insert(format!("past the pivot, {reason}"));
                } else {
                    abort.get_or_insert(reason);
                }
            }
        }
    }

    /// One action: its logged request, or one built now.
    async fn action(&self, i: usize) -> Result<StepEnd, Halt> {
        let step = &self.plan.steps[i];
        let record = self.snapshot().await;
        let request = match record.branch(&step.id, Op::Action) {
            Some(logged) => logged.request.clone(),
            None => match &step.request {
                PlanRequest::Input => record.input.clone(),
                PlanRequest::Value { value } => value.clone(),
                PlanRequest::Builder => {
                    let Some(build) = self.saga.as_ref().and_then(|s| s.builder_of(&step.id))
                    else {
                        return Ok(StepEnd::Failed(format!(
                            "step {}: its request builder is not registered (saga {:?} unknown to this coordinator)",
                            step.id, self.plan.saga
                        )));
                    };
                    let outputs: BTreeMap<BranchId, Value> = record
                        .branches
                        .iter()
                        .filter(|b| b.op == Op::Action && b.state == BranchState::Succeeded)
                        .filter_map(|b| Some((b.branch.clone(), b.output.clone()?)))
                        .collect();
                    build(&record.input, &outputs)
                }
            },
        };
        let is_pivot = self.plan.pivot.as_ref() == Some(&step.id);
        let spec = BranchSpec {
            branch: &step.id,
            op: Op::Action,
            participant: &step.action,
            request,
            timeout: Duration::from_millis(step.timeout_ms),
            deadline: if self.after_pivot[i] {
                None
            } else {
                self.deadline
            },
            on_success: is_pivot.then_some(TxUpdate {
                state: Some(TxState::Committing),
                decision: Some(Decision::Commit),
                reason: None,
            }),
        };
        Ok(match call_branch(self.inner, &self.log, spec).await? {
            CallEnd::Succeeded(_) => StepEnd::Done,
            CallEnd::Refused(e) => StepEnd::Failed(format!("step {} refused: {e}", step.id)),
            CallEnd::GaveUp { error, .. } => StepEnd::Failed(format!("step {}: {error}", step.id)),
        })
    }

    /// Compensates every action that ran or may have run, in reverse
    /// dependency order; aborts or parks.
    async fn compensate(&self, reason: Option<String>) -> Result<TxRecord, Halt> {
        let record = self.snapshot().await;
        if record.state != TxState::Aborting {
            tracing::info!(name = %self.inner.config.name, tx = %record.id, reason = reason.as_deref().unwrap_or(""), "compensating");
            self.log
                .lock()
                .await
                .write(Write {
                    tx: Some(TxUpdate {
                        state: Some(TxState::Aborting),
                        decision: Some(Decision::Abort),
                        reason: reason.map(Some),
                    }),
                    branches: Vec::new(),
                })
                .await?;
        }
        let record = self.snapshot().await;
        let n = self.plan.steps.len();
        let mut done: Vec<bool> = (0..n)
            .map(|i| {
                let step = &self.plan.steps[i];
                let ran = self
                    .action_state(&record, i)
                    .is_some_and(BranchState::may_have_applied);
                let compensated = record
                    .branch(&step.id, Op::Compensate)
                    .is_some_and(|b| b.state == BranchState::Succeeded);
                !ran || step.compensation.is_none() || compensated
            })
            .collect();
        let mut started = vec![false; n];
        let mut running: Pending<'_, (usize, Result<StepEnd, Halt>)> = Vec::new();
        let mut stop: Option<String> = None;
        loop {
            if stop.is_none() {
                for i in 0..n {
                    if done[i] || started[i] {
                        continue;
                    }
                    if self.graph.descendants(i).iter().all(|&j| done[j]) {
                        started[i] = true;
                        let run = self;
                        running.push(Box::pin(async move { (i, run.compensation(i).await) }));
                    }
                }
            }
            if running.is_empty() {
                if let Some(reason) = stop {
                    let record = self.snapshot().await;
                    return park(self.inner, record, reason).await;
                }
                if done.iter().all(|d| *d) {
                    let reason = self.snapshot().await.reason;
                    return self.finish(TxState::Aborted, reason).await;
                }
                let record = self.snapshot().await;
                return park(
                    self.inner,
                    record,
                    "no compensation can run and the saga is not undone".to_owned(),
                )
                .await;
            }
            let (i, end) = next_done(&mut running).await;
            match end? {
                StepEnd::Done => done[i] = true,
                StepEnd::Failed(reason) => {
                    stop.get_or_insert(reason);
                }
            }
        }
    }

    /// One compensation, with `{"request", "output"}` of its action.
    async fn compensation(&self, i: usize) -> Result<StepEnd, Halt> {
        let step = &self.plan.steps[i];
        let Some(participant) = &step.compensation else {
            return Ok(StepEnd::Done);
        };
        let record = self.snapshot().await;
        let request = match record.branch(&step.id, Op::Compensate) {
            Some(logged) => logged.request.clone(),
            None => {
                let action = record.branch(&step.id, Op::Action);
                json!({
                    "request": action.map_or(Value::Null, |a| a.request.clone()),
                    "output": action.and_then(|a| a.output.clone()).unwrap_or(Value::Null),
                })
            }
        };
        let spec = BranchSpec {
            branch: &step.id,
            op: Op::Compensate,
            participant,
            request,
            timeout: Duration::from_millis(step.timeout_ms),
            deadline: None,
            on_success: None,
        };
        Ok(match call_branch(self.inner, &self.log, spec).await? {
            CallEnd::Succeeded(_) => StepEnd::Done,
            CallEnd::Refused(e) => StepEnd::Failed(format!(
                "the compensation of step {} was refused: {e}",
                step.id
            )),
            CallEnd::GaveUp { error, .. } => {
                StepEnd::Failed(format!("the compensation of step {}: {error}", step.id))
            }
        })
    }

    async fn finish(&self, state: TxState, reason: Option<String>) -> Result<TxRecord, Halt> {
        let decision = (state == TxState::Committed).then_some(Decision::Commit);
        let mut log = self.log.lock().await;
        log.write(Write {
            tx: Some(TxUpdate {
                state: Some(state),
                decision,
                reason: Some(reason),
            }),
            branches: Vec::new(),
        })
        .await?;
        Ok(log.record.clone())
    }
}

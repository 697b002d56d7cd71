//! The saga engine: drives one saga from its log record, whether the run
//! was just started or is recovered.
//!
//! Writes are merged so that a sequential saga of n steps makes n + 1:
//! the first ready steps' `Sent` records go into the transaction's
//! `create` ([`first_sends`]); a step's success is logged with the `Sent`
//! records of the steps it makes ready (their requests built under the
//! log's lock), and the last success with `Committed`. A `Sent` record this
//! run logged ahead stays unsent until its step is launched: the step then
//! calls without logging it again; a deadline that passed meanwhile logs
//! it `Failed` unsent, and a saga that turns to compensate logs those never
//! launched `Failed` in its `Aborting` write. After a crash, such a record
//! is in doubt like any `Sent`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Graph, PlanRequest, SagaPlan};
use crate::coordinator::{
    BranchSpec, CallEnd, Halt, Inner, Links, Pending, Published, TxLog, call_branch, call_linked,
    deadline_of, next_done, park, read, shared,
};
use crate::model::{
    BranchId, BranchRecord, BranchState, Decision, Op, TxRecord, TxState, now_ms, outputs,
};
use crate::saga::Saga;
use crate::store::{TxUpdate, Write};

/// How a step's call (action or compensation) ended.
enum StepEnd {
    Done,
    Failed(String),
}

/// The `Sent` records of the steps that depend on nothing, their requests
/// built from `input`: logged with the saga's `create`, then sent by the
/// run [`drive`] is given the saga for.
pub(crate) fn first_sends(saga: &Saga, input: &Value) -> Vec<BranchRecord> {
    let now = now_ms();
    saga.plan()
        .steps
        .iter()
        .filter(|step| step.after.is_empty())
        .filter_map(|step| {
            let request = match &step.request {
                PlanRequest::Input => input.clone(),
                PlanRequest::Value { value } => value.clone(),
                PlanRequest::Builder => saga.builder_of(&step.id)?(input, &BTreeMap::new()),
            };
            Some(sent(&step.id, request, now))
        })
        .collect()
}

/// A step's action logged `Sent` for its first attempt.
fn sent(step: &BranchId, request: Value, now: u64) -> BranchRecord {
    BranchRecord {
        branch: step.clone(),
        op: Op::Action,
        state: BranchState::Sent,
        request,
        output: None,
        error: None,
        attempts: 1,
        updated_at: now,
    }
}

/// Drives the saga in `record` (leased to this coordinator) to a terminal
/// or parked state. `fresh` is the saga when this run just created the
/// record (with [`first_sends`]), `None` when it is recovered.
///
/// The run works from the decoded plan: the copies of the record it makes
/// (one per write, for its readers) and the record it returns leave the
/// logged plan out (`null`); the log keeps it.
pub(crate) async fn drive(
    inner: &Inner,
    mut record: TxRecord,
    fresh: Option<&Saga>,
) -> Result<TxRecord, Halt> {
    let plan: Arc<SagaPlan> = match fresh {
        Some(saga) => Arc::clone(saga.plan()),
        None => match SagaPlan::deserialize(&record.plan) {
            Ok(plan) => Arc::new(plan),
            Err(e) => {
                let reason = format!("the saga plan in the log does not decode: {e}");
                return park(inner, record, reason).await;
            }
        },
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
    let deadline = deadline_of(&record);
    // the `Sent` records `create` logged for this run, not sent yet
    let prelogged = plan
        .steps
        .iter()
        .map(|s| {
            fresh.is_some()
                && record
                    .branch(&s.id, Op::Action)
                    .is_some_and(|b| b.state == BranchState::Sent)
        })
        .collect();
    let state = record.state;
    record.plan = Value::Null;
    let log = TxLog::new(inner, record);
    let run = Run {
        inner,
        saga: match fresh {
            Some(saga) => Some(saga.clone()),
            None => inner.saga(&plan.saga),
        },
        plan,
        graph,
        deps,
        after_pivot,
        deadline,
        published: log.published(),
        log: Mutex::new(log),
        prelogged: std::sync::Mutex::new(prelogged),
    };
    match state {
        TxState::Running | TxState::Committing => run.forward().await,
        TxState::Aborting => run.compensate(None).await,
        _ => Ok(read(&run.published)),
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
    plan: Arc<SagaPlan>,
    graph: Graph,
    deps: Vec<Vec<usize>>,
    after_pivot: Vec<bool>,
    deadline: Option<Instant>,
    log: Mutex<TxLog<'c>>,
    /// The record as last written (see [`TxLog::published`]).
    published: Published,
    /// By step: its action's `Sent` was logged by this run and its step
    /// not launched yet (set under the log's lock, taken at launch).
    prelogged: std::sync::Mutex<Vec<bool>>,
}

impl Run<'_> {
    /// The record as last written (shared, not copied). Never waits for
    /// the log's lock: the steps running alongside may be queued for it,
    /// and they only move while the caller polls them.
    async fn snapshot(&self) -> Arc<TxRecord> {
        shared(&self.published)
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
                        let sent_logged = std::mem::take(&mut self.prelogged()[i]);
                        let run = self;
                        running.push(Box::pin(
                            async move { (i, run.action(i, sent_logged).await) },
                        ));
                    }
                }
            }
            if running.is_empty() {
                let record = self.snapshot().await;
                if let Some(reason) = stop {
                    return park(self.inner, TxRecord::clone(&record), reason).await;
                }
                if let Some(reason) = abort {
                    return self.compensate(Some(reason)).await;
                }
                if (0..n).all(|i| self.action_state(&record, i) == Some(BranchState::Succeeded)) {
                    // the last success was logged with the commit, unless
                    // the deadline had passed (then this run compensated)
                    if record.state == TxState::Committed {
                        return Ok(Arc::unwrap_or_clone(record));
                    }
                    return self.finish(TxState::Committed, None).await;
                }
                return park(
                    self.inner,
                    TxRecord::clone(&record),
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

    /// The steps whose `Sent` this run logged and has not launched.
    fn prelogged(&self) -> std::sync::MutexGuard<'_, Vec<bool>> {
        self.prelogged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Step `i`'s request, built from `record` and `done` (a success about
    /// to be logged with it), or why it cannot be built.
    fn request(
        &self,
        i: usize,
        record: &TxRecord,
        done: Option<&BranchRecord>,
    ) -> Result<Value, String> {
        let step = &self.plan.steps[i];
        let build = || self.saga.as_ref().and_then(|s| s.builder_of(&step.id));
        let outputs = || outputs(record.branches.iter().chain(done), |op| op == Op::Action);
        step.request
            .resolve(&record.input, build, outputs)
            .ok_or_else(|| {
                format!(
                    "step {}: its request builder is not registered (saga {:?} unknown to this coordinator)",
                    step.id, self.plan.saga
                )
            })
    }

    /// What to log with step `i`'s success `done` (called under the log's
    /// lock with `record` as last written): the pivot's commit decision;
    /// `Committed` if it is the last step to succeed (in time); else the
    /// `Sent` records of the steps it makes ready, unless the saga is
    /// failing or out of time (the forward loop then compensates or parks).
    fn follow(&self, i: usize, record: &TxRecord, done: &BranchRecord) -> Write {
        let is_pivot = self.plan.pivot.as_ref() == Some(&self.plan.steps[i].id);
        let passed = is_pivot || record.decision == Some(Decision::Commit);
        let in_time = passed || self.deadline.is_none_or(|d| Instant::now() < d);
        let succeeded =
            |j: usize| j == i || self.action_state(record, j) == Some(BranchState::Succeeded);
        let mut write = Write {
            tx: is_pivot.then_some(TxUpdate {
                state: Some(TxState::Committing),
                decision: Some(Decision::Commit),
                reason: None,
            }),
            branches: Vec::new(),
        };
        if !in_time {
            return write;
        }
        let n = self.plan.steps.len();
        if (0..n).all(succeeded) {
            write.tx = Some(TxUpdate {
                state: Some(TxState::Committed),
                decision: Some(Decision::Commit),
                reason: Some(None),
            });
            return write;
        }
        let failing = record.branches.iter().any(|b| {
            b.op == Op::Action && matches!(b.state, BranchState::Failed | BranchState::InDoubt)
        });
        if failing || !matches!(record.state, TxState::Running | TxState::Committing) {
            return write;
        }
        let now = now_ms();
        let mut prelogged = self.prelogged();
        for j in (0..n).filter(|&j| self.deps[j].contains(&i)) {
            let step = &self.plan.steps[j];
            // only steps this success makes ready, never one logged before
            if record.branch(&step.id, Op::Action).is_some()
                || !self.deps[j].iter().all(|&k| succeeded(k))
            {
                continue;
            }
            // a request that cannot be built fails in the step's own run
            if let Ok(request) = self.request(j, record, Some(done)) {
                write.branches.push(sent(&step.id, request, now));
                prelogged[j] = true;
            }
        }
        write
    }

    /// One action: its logged request, or one built now. `sent_logged`:
    /// its `Sent` was logged ahead by this run.
    async fn action(&self, i: usize, sent_logged: bool) -> Result<StepEnd, Halt> {
        let step = &self.plan.steps[i];
        let record = self.snapshot().await;
        let request = match record.branch(&step.id, Op::Action) {
            Some(logged) => logged.request.clone(),
            None => match self.request(i, &record, None) {
                Ok(request) => request,
                Err(reason) => return Ok(StepEnd::Failed(reason)),
            },
        };
        let follow = |record: &TxRecord, done: &BranchRecord| self.follow(i, record, done);
        let links = Links {
            sent_logged,
            on_success: Some(&follow),
        };
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
            // the pivot's decision comes from `follow`
            on_success: None,
        };
        Ok(
            match call_linked(self.inner, &self.log, spec, links).await? {
                CallEnd::Succeeded(_) => StepEnd::Done,
                CallEnd::Refused(e) => StepEnd::Failed(format!("step {} refused: {e}", step.id)),
                CallEnd::GaveUp { error, .. } => {
                    StepEnd::Failed(format!("step {}: {error}", step.id))
                }
            },
        )
    }

    /// Compensates every action that ran or may have run, in reverse
    /// dependency order; aborts or parks.
    async fn compensate(&self, reason: Option<String>) -> Result<TxRecord, Halt> {
        let record = self.snapshot().await;
        if record.state != TxState::Aborting {
            tracing::info!(name = %self.inner.config.name, tx = %record.id, reason = reason.as_deref().unwrap_or(""), "compensating");
            // steps logged `Sent` ahead and never launched: never sent
            let now = now_ms();
            let unsent = self
                .prelogged()
                .iter_mut()
                .enumerate()
                .filter_map(|(i, unsent)| std::mem::take(unsent).then_some(i))
                .filter_map(|i| {
                    let mut b = record.branch(&self.plan.steps[i].id, Op::Action)?.clone();
                    b.state = BranchState::Failed;
                    b.attempts = b.attempts.saturating_sub(1);
                    b.error = Some("not sent: the saga turned to compensate first".to_owned());
                    b.updated_at = now;
                    Some(b)
                })
                .collect();
            self.log
                .lock()
                .await
                .write(Write {
                    tx: Some(TxUpdate {
                        state: Some(TxState::Aborting),
                        decision: Some(Decision::Abort),
                        reason: reason.map(Some),
                    }),
                    branches: unsent,
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
                    return park(self.inner, TxRecord::clone(&record), reason).await;
                }
                if done.iter().all(|d| *d) {
                    let reason = self.snapshot().await.reason.clone();
                    return self.finish(TxState::Aborted, reason).await;
                }
                let record = self.snapshot().await;
                return park(
                    self.inner,
                    TxRecord::clone(&record),
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
        let request = record.follow_up_request(&step.id, Op::Compensate, Op::Action);
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

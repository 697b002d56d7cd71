//! Branch calls, protocol-neutral: log `Sent`, call with a timeout, judge,
//! log the result; retry with backoff up to the attempt limit.
//!
//! An engine may merge writes around a call ([`Links`]): attempt 1's `Sent`
//! logged earlier, in another write of this run (the saga logs a step's
//! `Sent` with the success that made it ready), and more records or a
//! state change logged with the success.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::{Instant, sleep, timeout};
use tower::ServiceExt;
use tracing::Instrument;

use super::Inner;
use super::log::{Halt, TxLog};
use crate::model::{BranchId, BranchRecord, BranchState, Op, TxId, TxRecord, now_ms};
use crate::participant::{Attempt, BranchCall};
use crate::store::{TxUpdate, Write};

/// One branch call to make.
#[derive(Debug)]
pub(crate) struct BranchSpec<'a> {
    pub(crate) branch: &'a BranchId,
    pub(crate) op: Op,
    pub(crate) participant: &'a str,
    pub(crate) request: Value,
    /// Each attempt's timeout.
    pub(crate) timeout: Duration,
    /// No attempt starts (or runs) past this.
    pub(crate) deadline: Option<Instant>,
    /// Written with the success, in the same atomic write.
    pub(crate) on_success: Option<TxUpdate>,
}

/// Computes what to log with a success, under the log's lock: called with
/// the record as last written and the success record about to be logged.
pub(crate) type OnSuccess<'a> = dyn Fn(&TxRecord, &BranchRecord) -> Write + Send + Sync + 'a;

/// How a call is merged with the writes around it (see the [module
/// docs](self)). The default merges nothing.
#[derive(Default)]
pub(crate) struct Links<'a> {
    /// This run logged the branch's record `Sent` for attempt 1 (with
    /// `attempts` at one) and has sent nothing since: attempt 1 does not
    /// log it again, and the call has not applied yet. Retries log `Sent`
    /// before each attempt as usual.
    pub(crate) sent_logged: bool,
    /// Written with the success, in the same atomic write: its branch
    /// records after the success record, its transaction update instead
    /// of [`BranchSpec::on_success`] when it has one.
    pub(crate) on_success: Option<&'a OnSuccess<'a>>,
}

impl std::fmt::Debug for Links<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("sent_logged", &self.sent_logged)
            .field("on_success", &self.on_success.is_some())
            .finish()
    }
}

/// How a branch call ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CallEnd {
    /// Applied; the participant's answer (logged `Succeeded`).
    Succeeded(Value),
    /// Refused for good (logged `Failed`).
    Refused(String),
    /// The attempts (or the deadline) ran out; logged `InDoubt` if it may
    /// have applied, else `Failed`.
    GaveUp {
        /// An attempt (this run's or a crashed one's) may have applied.
        may_have_applied: bool,
        /// The last error.
        error: String,
    },
}

/// Makes the call described by `spec`: see the [module docs](self).
pub(crate) async fn call_branch(
    inner: &Inner,
    log: &Mutex<TxLog<'_>>,
    spec: BranchSpec<'_>,
) -> Result<CallEnd, Halt> {
    call_linked(inner, log, spec, Links::default()).await
}

/// Makes the call described by `spec`, its writes merged as `links` says.
pub(crate) async fn call_linked(
    inner: &Inner,
    log: &Mutex<TxLog<'_>>,
    spec: BranchSpec<'_>,
    links: Links<'_>,
) -> Result<CallEnd, Halt> {
    let (tx, prior) = {
        let log = log.lock().await;
        let prior = log.record.branch(spec.branch, spec.op).cloned();
        (log.record.id.clone(), prior)
    };
    let logged_before = prior.is_some();
    let sent_logged = links.sent_logged && logged_before;
    let mut total = prior.as_ref().map_or(0, |p| p.attempts);
    let (mut may_have_applied, mut error) = match prior {
        // this run's own `Sent` of attempt 1: nothing was sent yet
        Some(_) if sent_logged => {
            total = total.saturating_sub(1);
            (false, None)
        }
        // a `Sent` or in-doubt record left by an earlier run may have applied
        Some(p) => (
            matches!(p.state, BranchState::Sent | BranchState::InDoubt),
            p.error,
        ),
        None => (false, None),
    };
    let record = |state, total, output, error| BranchRecord {
        branch: spec.branch.clone(),
        op: spec.op,
        state,
        request: spec.request.clone(),
        output,
        error,
        attempts: total,
        updated_at: now_ms(),
    };
    let Some(participant) = inner.participant(spec.participant) else {
        let error = format!("no participant {:?} registered", spec.participant);
        // this run's own `Sent` is settled (never sent); an earlier run's stays
        return give_up(log, sent_logged, may_have_applied, error, |s, e| {
            record(s, total, None, Some(e))
        })
        .await;
    };
    let max = inner.config.max_attempts;
    let mut previous_delay = None;
    let mut attempt = 0;
    loop {
        let left = spec
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            let error = format!(
                "global timeout reached{}",
                error
                    .as_deref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            );
            return give_up(
                log,
                attempt > 0 || logged_before,
                may_have_applied,
                error,
                |s, e| record(s, total, None, Some(e)),
            )
            .await;
        }
        attempt += 1;
        total += 1;
        if !(sent_logged && attempt == 1) {
            log_branch(
                log,
                None,
                record(BranchState::Sent, total, None, error.clone()),
            )
            .await?;
        }
        let call = BranchCall {
            tx: tx.clone(),
            branch: spec.branch.clone(),
            op: spec.op,
            payload: spec.request.clone(),
        };
        let limit = left.map_or(spec.timeout, |l| l.min(spec.timeout));
        let span = tracing::info_span!("branch_call", branch = %spec.branch, op = %spec.op, attempt = total);
        let answer = timeout(limit, participant.clone().oneshot(call)).instrument(span);
        let outcome = match keep_lease(inner, &tx, answer).await {
            Ok(result) => Attempt::judge(result),
            Err(_) => Attempt::InDoubt(format!("no answer within {limit:?}")),
        };
        inner.metrics.branch_call(spec.op, &outcome);
        match outcome {
            Attempt::Success(output) => {
                let done = record(BranchState::Succeeded, total, Some(output.clone()), None);
                let mut log = log.lock().await;
                let mut write = match links.on_success {
                    Some(follow) => follow(&log.record, &done),
                    None => Write::default(),
                };
                write.tx = write.tx.or_else(|| spec.on_success.clone());
                write.branches.insert(0, done);
                log.write(write).await?;
                return Ok(CallEnd::Succeeded(output));
            }
            Attempt::Terminal(e) => {
                // an earlier attempt in doubt may have applied: keep it in doubt
                let state = unsettled(may_have_applied);
                log_branch(log, None, record(state, total, None, Some(e.clone()))).await?;
                return Ok(CallEnd::Refused(e));
            }
            Attempt::Retryable(e) => error = Some(e),
            Attempt::InDoubt(e) => {
                may_have_applied = true;
                error = Some(e);
            }
        }
        let error_text = error.clone().unwrap_or_default();
        tracing::warn!(name = %inner.config.name, tx = %tx, branch = %spec.branch, op = %spec.op, attempt, error = %error_text, "branch call failed");
        if attempt >= max {
            let error = format!("gave up after {attempt} attempts: {error_text}");
            return give_up(log, true, may_have_applied, error, |s, e| {
                record(s, total, None, Some(e))
            })
            .await;
        }
        let delay = inner.delay(attempt, previous_delay);
        previous_delay = Some(delay);
        let delay = spec.deadline.map_or(delay, |d| {
            delay.min(d.saturating_duration_since(Instant::now()))
        });
        sleep(delay).await;
    }
}

async fn give_up(
    log: &Mutex<TxLog<'_>>,
    logged: bool,
    may_have_applied: bool,
    error: String,
    record: impl Fn(BranchState, String) -> BranchRecord,
) -> Result<CallEnd, Halt> {
    // never logged (not called in this run nor before): nothing applied
    if logged {
        let state = unsettled(may_have_applied);
        log_branch(log, None, record(state, error.clone())).await?;
    }
    Ok(CallEnd::GaveUp {
        may_have_applied,
        error,
    })
}

/// Awaits `call`, renewing the lease on `tx` every third of the lease
/// meanwhile, so that a slow participant does not hand the transaction to
/// another coordinator. (A lost lease shows at the next write, whose
/// version fence stops this run.)
async fn keep_lease<F: std::future::Future>(inner: &Inner, tx: &TxId, call: F) -> F::Output {
    let lease = inner.config.lease;
    tokio::pin!(call);
    loop {
        tokio::select! {
            out = &mut call => return out,
            () = sleep(lease / 3) => {
                if let Err(e) = inner.store.renew(tx, &inner.owner, lease).await {
                    tracing::warn!(name = %inner.config.name, %tx, error = %e, "could not renew the lease during a branch call");
                }
            }
        }
    }
}

/// A call that did not succeed: in doubt if it may have applied, else
/// failed (no effect).
fn unsettled(may_have_applied: bool) -> BranchState {
    if may_have_applied {
        BranchState::InDoubt
    } else {
        BranchState::Failed
    }
}

/// Logs one branch record (and a transaction update with it).
async fn log_branch(
    log: &Mutex<TxLog<'_>>,
    tx: Option<TxUpdate>,
    record: BranchRecord,
) -> Result<(), Halt> {
    log.lock()
        .await
        .write(Write {
            tx,
            branches: vec![record],
        })
        .await
}

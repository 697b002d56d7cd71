//! The participant side of 3PC: [`ThreePhaseParticipant`], a tower service
//! that runs the per-branch state machine (with its timeouts) over a
//! [`Resource`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use rampart_core::metric_name;
use rampart_core::metrics::InstanceLabels;
use rampart_core::{BoxError, BoxFuture};
use serde_json::{Value, json};
use tokio::task::AbortHandle;

use crate::model::{BranchId, Op, TxId};
use crate::participant::{BranchCall, BranchError, FailureKind};

/// Counter: decisions a [`ThreePhaseParticipant`] took on its own after a
/// timeout, by `decision` (`commit`, `abort`).
pub const TIMEOUTS_TOTAL: &str = metric_name!("transaction", "three_phase_timeouts_total");

/// What a 3PC participant does to its own data. [`ThreePhaseParticipant`]
/// calls it at each transition of a branch, one call at a time per branch.
///
/// The state machine lives in the participant's memory. Make what each
/// step does durable in your own store. After a restart, seed the branches
/// it had voted on or pre-committed with
/// [`ThreePhaseParticipant::restore`] (their timers start afresh), or ask
/// the coordinator for their outcome (`Coordinator::decision`, or the
/// admin router's decision route).
pub trait Resource: Send + Sync + 'static {
    /// CanCommit: the vote. `Ok` votes yes, and its value is the answer
    /// (logged as the branch's output). A terminal [`BranchError`] votes
    /// no. Any other error leaves the branch undecided, and the coordinator
    /// may ask again.
    fn can_commit<'a>(&'a self, call: &'a BranchCall) -> BoxFuture<'a, Result<Value, BranchError>>;

    /// PreCommit: get ready to commit (write the changes ahead, keep the
    /// locks) so that committing later cannot fail for a business reason.
    /// Once this succeeds, the branch commits on its own if it hears
    /// nothing more. An error leaves the branch waiting, and the
    /// coordinator retries or aborts.
    fn pre_commit<'a>(&'a self, call: &'a BranchCall) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Commits the branch, after DoCommit or on its own after the commit
    /// timeout. An error is retried.
    fn commit<'a>(
        &'a self,
        tx: &'a TxId,
        branch: &'a BranchId,
    ) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Aborts the branch (releases what the vote or the PreCommit held),
    /// after a rollback or on its own after the wait timeout. An error is
    /// retried.
    fn abort<'a>(
        &'a self,
        tx: &'a TxId,
        branch: &'a BranchId,
    ) -> BoxFuture<'a, Result<(), BoxError>>;
}

/// Where a branch is on a [`ThreePhaseParticipant`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThreePhaseState {
    /// Voted yes; waiting for PreCommit. Aborts on its own after the
    /// [wait timeout](ThreePhaseParticipant::wait_timeout).
    Voted,
    /// Acknowledged PreCommit; waiting for DoCommit. Commits on its own
    /// after the [commit timeout](ThreePhaseParticipant::commit_timeout).
    PreCommitted,
    /// Committed (`by_timeout`: on its own).
    Committed {
        /// The participant decided on its own, after the commit timeout.
        by_timeout: bool,
    },
    /// Aborted: voted no, rolled back, or (`by_timeout`) on its own.
    Aborted {
        /// The participant decided on its own, after the wait timeout.
        by_timeout: bool,
    },
}

impl ThreePhaseState {
    fn name(self) -> &'static str {
        match self {
            Self::Voted => "voted",
            Self::PreCommitted => "pre-committed",
            Self::Committed { by_timeout: false } => "committed",
            Self::Committed { by_timeout: true } => "committed on its own after the commit timeout",
            Self::Aborted { by_timeout: false } => "aborted",
            Self::Aborted { by_timeout: true } => "aborted on its own after the wait timeout",
        }
    }
}

/// The participant side of 3PC, as a tower service of [`BranchCall`]s
/// (wrap it with [`participant`](crate::participant::participant), or put
/// it behind your HTTP handler). Per `(transaction, branch)`:
///
/// | call | state | does | answers |
/// |---|---|---|---|
/// | CanCommit | new | [`Resource::can_commit`] | the vote: yes → `Voted`, no (terminal error) → `Aborted` |
/// | CanCommit | voted, pre-committed, committed | nothing | the first yes again |
/// | PreCommit | `Voted` | [`Resource::pre_commit`] | `{"pre_committed": true}` → `PreCommitted` |
/// | DoCommit (`Op::Commit`) | `PreCommitted` | [`Resource::commit`] | `{"committed": true}` → `Committed` |
/// | Rollback | new | nothing (an empty rollback: a later CanCommit is refused) | `null` → `Aborted` |
/// | Rollback | `Voted`, `PreCommitted` | [`Resource::abort`] | `null` → `Aborted` |
/// | a repeat of what was done | | nothing | the same answer |
/// | PreCommit, DoCommit | `Aborted` | nothing | a terminal error (the outcome is split if others commit) |
/// | Rollback | `Committed` | nothing | a terminal error (the outcome is split) |
/// | PreCommit, DoCommit | new; DoCommit when `Voted` | nothing | a terminal error (out of order) |
///
/// Timeouts, on tokio's clock: `Voted` for longer than the [wait
/// timeout](Self::wait_timeout) aborts on its own; `PreCommitted` for
/// longer than the [commit timeout](Self::commit_timeout) commits on its
/// own (counted in [`TIMEOUTS_TOTAL`]). A resource call that fails on
/// such a timeout is retried every [`retry_interval`](Self::retry_interval),
/// with a warning each time.
///
/// A finished branch is remembered for [`remember`](Self::remember) (to
/// answer repeats and refuse late calls), then forgotten. Each resource call
/// for a branch runs alone, so concurrent repeats wait for the first.
/// Under overload nothing is shed here: every call waits for its branch.
///
/// ```
/// use rampart_core::{BoxError, BoxFuture};
/// use rampart_transaction::model::{BranchId, Op, TxId};
/// use rampart_transaction::participant::{BranchCall, BranchError};
/// use rampart_transaction::three_phase::{Resource, ThreePhaseParticipant, ThreePhaseState};
/// use serde_json::{Value, json};
/// use tower::ServiceExt;
///
/// struct Ledger;
/// impl Resource for Ledger {
///     fn can_commit<'a>(&'a self, _: &'a BranchCall) -> BoxFuture<'a, Result<Value, BranchError>> {
///         Box::pin(async { Ok(json!("yes")) })
///     }
///     fn pre_commit<'a>(&'a self, _: &'a BranchCall) -> BoxFuture<'a, Result<(), BoxError>> {
///         Box::pin(async { Ok(()) }) // write ahead, keep the locks
///     }
///     fn commit<'a>(&'a self, _: &'a TxId, _: &'a BranchId) -> BoxFuture<'a, Result<(), BoxError>> {
///         Box::pin(async { Ok(()) })
///     }
///     fn abort<'a>(&'a self, _: &'a TxId, _: &'a BranchId) -> BoxFuture<'a, Result<(), BoxError>> {
///         Box::pin(async { Ok(()) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let ledger = ThreePhaseParticipant::new(Ledger);
/// let (tx, branch) = (TxId::new("t-1")?, BranchId::new("ledger")?);
/// let call = |op| BranchCall { tx: tx.clone(), branch: branch.clone(), op, payload: Value::Null };
/// assert_eq!(ledger.clone().oneshot(call(Op::CanCommit)).await?, json!("yes"));
/// ledger.clone().oneshot(call(Op::PreCommit)).await?;
/// assert_eq!(ledger.state(&tx, &branch).await, Some(ThreePhaseState::PreCommitted));
/// ledger.clone().oneshot(call(Op::Commit)).await?;
/// assert_eq!(ledger.state(&tx, &branch).await, Some(ThreePhaseState::Committed { by_timeout: false }));
/// # Ok(()) }
/// ```
pub struct ThreePhaseParticipant<R> {
    shared: Arc<Shared<R>>,
}

impl<R> Clone for ThreePhaseParticipant<R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<R> fmt::Debug for ThreePhaseParticipant<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreePhaseParticipant")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Config {
    wait_timeout: Duration,
    commit_timeout: Duration,
    retry_interval: Duration,
    remember: Duration,
    name: String,
    labels: InstanceLabels,
}

type Key = (TxId, BranchId);

struct Shared<R> {
    resource: R,
    config: Config,
    branches: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<Entry>>>>,
}

/// One branch's state machine.
#[derive(Debug, Default)]
struct Entry {
    /// `None`: no call has changed it yet.
    state: Option<ThreePhaseState>,
    /// The yes vote's answer.
    vote: Value,
    /// Why it voted no.
    refusal: Option<String>,
    /// Bumped by every transition, so that a timer armed before it does
    /// nothing.
    generation: u64,
    timer: Option<AbortHandle>,
    /// Removed from the map: look the branch up again.
    gone: bool,
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy)]
enum Timer {
    Abort,
    Commit,
    Forget,
}

impl<R: Resource> ThreePhaseParticipant<R> {
    /// A participant over `resource`, with 30 s wait and commit timeouts,
    /// a 1 s retry interval, and finished branches remembered for 10
    /// minutes.
    pub fn new(resource: R) -> Self {
        Self {
            shared: Arc::new(Shared {
                resource,
                config: Config {
                    wait_timeout: Duration::from_secs(30),
                    commit_timeout: Duration::from_secs(30),
                    retry_interval: Duration::from_secs(1),
                    remember: Duration::from_secs(600),
                    name: String::new(),
                    labels: InstanceLabels::new(""),
                },
                branches: Mutex::default(),
            }),
        }
    }

    fn config(mut self, change: impl FnOnce(&mut Config)) -> Self {
        let shared = Arc::get_mut(&mut self.shared)
            .expect("configure a ThreePhaseParticipant before cloning it");
        change(&mut shared.config);
        self
    }

    /// How long a branch that voted yes waits for its PreCommit before it
    /// aborts on its own. Defaults to 30 s. Configure before cloning.
    pub fn wait_timeout(self, timeout: Duration) -> Self {
        self.config(|c| c.wait_timeout = timeout)
    }

    /// How long a pre-committed branch waits for DoCommit (or a rollback)
    /// before it commits on its own. Defaults to 30 s.
    pub fn commit_timeout(self, timeout: Duration) -> Self {
        self.config(|c| c.commit_timeout = timeout)
    }

    /// The pause before a failed [`Resource::commit`] or
    /// [`Resource::abort`] on a timeout is tried again. Defaults to 1 s.
    pub fn retry_interval(self, interval: Duration) -> Self {
        self.config(|c| c.retry_interval = interval)
    }

    /// How long a finished branch is remembered. Defaults to 10 minutes.
    /// Keep it longer than the coordinator may still send calls: a
    /// forgotten branch takes a late CanCommit as new.
    pub fn remember(self, remember: Duration) -> Self {
        self.config(|c| c.remember = remember)
    }

    /// The `name` label of its metrics. Defaults to `""`.
    pub fn name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.config(|c| {
            c.labels = InstanceLabels::new(name.clone());
            c.name = name;
        })
    }

    /// Seeds the state machine with a branch this participant knew before
    /// a restart, read back from your own durable store (what your
    /// [`Resource`] steps wrote). `vote` is the yes vote's answer (repeated
    /// to a repeated CanCommit). The timer of `state` starts afresh: a
    /// `Voted` branch aborts on its own after the wait timeout and a
    /// `PreCommitted` one commits after the commit timeout, unless the
    /// coordinator's call comes first. A finished state is remembered as
    /// usual. Returns `false`, changing nothing, if the branch is known
    /// already.
    pub async fn restore(
        &self,
        tx: TxId,
        branch: BranchId,
        state: ThreePhaseState,
        vote: Value,
    ) -> bool {
        let key = (tx, branch);
        let (_, mut e) = self.shared.entry(&key).await;
        if e.state.is_some() {
            return false;
        }
        e.vote = vote;
        self.shared.enter(&key, &mut e, state);
        true
    }

    /// Where branch `branch` of `tx` is, if it is known (voted, or
    /// finished and still remembered). Waits for a transition in progress.
    pub async fn state(&self, tx: &TxId, branch: &BranchId) -> Option<ThreePhaseState> {
        let key = (tx.clone(), branch.clone());
        let entry = self.shared.lock().get(&key).cloned()?;
        let e = entry.lock().await;
        if e.gone { None } else { e.state }
    }
}

impl<R> Shared<R> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<tokio::sync::Mutex<Entry>>>> {
        self.branches.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<R: Resource> Shared<R> {
    /// The branch's entry, locked (created if new).
    async fn entry(
        &self,
        key: &Key,
    ) -> (
        Arc<tokio::sync::Mutex<Entry>>,
        tokio::sync::OwnedMutexGuard<Entry>,
    ) {
        loop {
            let entry = Arc::clone(self.lock().entry(key.clone()).or_default());
            let guard = Arc::clone(&entry).lock_owned().await;
            if !guard.gone {
                return (entry, guard);
            }
        }
    }

    /// Moves `e` to `state` and arms the timer that goes with it.
    fn enter(self: &Arc<Self>, key: &Key, e: &mut Entry, state: ThreePhaseState) {
        e.state = Some(state);
        e.generation += 1;
        if let Some(timer) = e.timer.take() {
            timer.abort();
        }
        let (after, timer) = match state {
            ThreePhaseState::Voted => (self.config.wait_timeout, Timer::Abort),
            ThreePhaseState::PreCommitted => (self.config.commit_timeout, Timer::Commit),
            ThreePhaseState::Committed { .. } | ThreePhaseState::Aborted { .. } => {
                (self.config.remember, Timer::Forget)
            }
        };
        let shared = Arc::clone(self);
        let (key, generation) = (key.clone(), e.generation);
        let task = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            shared.fire(key, generation, timer).await;
        });
        e.timer = Some(task.abort_handle());
    }

    /// A timer armed at `generation` went off.
    async fn fire(self: Arc<Self>, key: Key, generation: u64, timer: Timer) {
        loop {
            let Some(entry) = self.lock().get(&key).cloned() else {
                return;
            };
            let mut e = entry.lock().await;
            if e.gone || e.generation != generation {
                return;
            }
            let (tx, branch) = (&key.0, &key.1);
            let (result, state, decision) = match timer {
                Timer::Forget => {
                    e.gone = true;
                    e.timer = None;
                    drop(e);
                    let mut map = self.lock();
                    if map.get(&key).is_some_and(|x| Arc::ptr_eq(x, &entry)) {
                        map.remove(&key);
                    }
                    return;
                }
                Timer::Abort => (
                    self.resource.abort(tx, branch).await,
                    ThreePhaseState::Aborted { by_timeout: true },
                    "abort",
                ),
                Timer::Commit => (
                    self.resource.commit(tx, branch).await,
                    ThreePhaseState::Committed { by_timeout: true },
                    "commit",
                ),
            };
            match result {
                Ok(()) => {
                    tracing::warn!(name = %self.config.name, %tx, %branch, state = state.name(), "3PC participant decided on its own after a timeout");
                    metrics::counter!(
                        TIMEOUTS_TOTAL,
                        self.config.labels.with("decision", decision)
                    )
                    .increment(1);
                    e.timer = None;
                    self.enter(&key, &mut e, state);
                    return;
                }
                Err(err) => {
                    tracing::warn!(name = %self.config.name, %tx, %branch, error = %err, decision, "3PC participant could not apply its timeout decision; retrying");
                    drop(e);
                    tokio::time::sleep(self.config.retry_interval).await;
                }
            }
        }
    }

    /// One call, with its branch locked.
    async fn handle(self: Arc<Self>, call: BranchCall) -> Result<Value, BranchError> {
        let key = (call.tx.clone(), call.branch.clone());
        let (entry, mut e) = self.entry(&key).await;
        let result = self.step(&key, &mut e, &call).await;
        if e.state.is_none() {
            // nothing changed for a branch it did not know: forget it again
            e.gone = true;
            drop(e);
            let mut map = self.lock();
            if map.get(&key).is_some_and(|x| Arc::ptr_eq(x, &entry)) {
                map.remove(&key);
            }
        }
        result
    }

    async fn step(
        self: &Arc<Self>,
        key: &Key,
        e: &mut Entry,
        call: &BranchCall,
    ) -> Result<Value, BranchError> {
        use ThreePhaseState::{Aborted, Committed, PreCommitted, Voted};
        let refused = |what: &str, state: Option<ThreePhaseState>| {
            let state = state.map_or("unknown to this participant", ThreePhaseState::name);
            Err(BranchError::terminal(format!(
                "{what} of {}/{}: the branch is {state}",
                call.tx, call.branch
            )))
        };
        let failed = |what: &str, err: BoxError| {
            Err(BranchError::retryable(format!(
                "{what} of {}/{} failed: {err}",
                call.tx, call.branch
            )))
        };
        match (call.op, e.state) {
            (Op::CanCommit, None) => match self.resource.can_commit(call).await {
                Ok(vote) => {
                    e.vote = vote.clone();
                    self.enter(key, e, Voted);
                    Ok(vote)
                }
                Err(no) if no.kind() == FailureKind::Terminal => {
                    e.refusal = Some(no.message().to_owned());
                    self.enter(key, e, Aborted { by_timeout: false });
                    Err(no)
                }
                Err(other) => Err(other),
            },
            (Op::CanCommit, Some(Voted | PreCommitted | Committed { .. })) => Ok(e.vote.clone()),
            (Op::CanCommit, Some(Aborted { .. })) => match &e.refusal {
                Some(no) => Err(BranchError::terminal(no.clone())),
                None => refused("CanCommit", e.state),
            },
            (Op::PreCommit, Some(Voted)) => match self.resource.pre_commit(call).await {
                Ok(()) => {
                    self.enter(key, e, PreCommitted);
                    Ok(json!({ "pre_committed": true }))
                }
                Err(err) => failed("PreCommit", err),
            },
            (Op::PreCommit, Some(PreCommitted | Committed { .. })) => {
                Ok(json!({ "pre_committed": true }))
            }
            (Op::Commit, Some(PreCommitted)) => {
                match self.resource.commit(&call.tx, &call.branch).await {
                    Ok(()) => {
                        self.enter(key, e, Committed { by_timeout: false });
                        Ok(json!({ "committed": true }))
                    }
                    Err(err) => failed("DoCommit", err),
                }
            }
            (Op::Commit, Some(Committed { .. })) => Ok(json!({ "committed": true })),
            (Op::Rollback, None) => {
                self.enter(key, e, Aborted { by_timeout: false });
                Ok(Value::Null)
            }
            (Op::Rollback, Some(Voted | PreCommitted)) => {
                match self.resource.abort(&call.tx, &call.branch).await {
                    Ok(()) => {
                        self.enter(key, e, Aborted { by_timeout: false });
                        Ok(Value::Null)
                    }
                    Err(err) => failed("Rollback", err),
                }
            }
            (Op::Rollback, Some(Aborted { .. })) => Ok(Value::Null),
            (Op::PreCommit, state) => refused("PreCommit", state),
            (Op::Commit, state) => refused("DoCommit", state),
            (Op::Rollback, state) => refused("Rollback", state),
            (op, _) => Err(BranchError::terminal(format!(
                "{op} is not a 3PC operation (can_commit, pre_commit, commit, rollback)"
            ))),
        }
    }
}

impl<R: Resource> tower::Service<BranchCall> for ThreePhaseParticipant<R> {
    type Response = Value;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Value, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: BranchCall) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { shared.handle(call).await.map_err(BoxError::from) })
    }
}

//! The [`Coordinator`]: the protocol-neutral machinery every engine (saga,
//! TCC, 2PC and 3PC) drives transactions with.
//!
//! - **Log before acting.** A transaction is created in the [`TxStore`]
//!   before any participant is called (a store that cannot log it fails
//!   [`start`](Coordinator::start) with [`TxError::Store`] and nothing is
//!   called); each branch call is logged `Sent` (with its request) before
//!   it is sent, and its result after.
//! - **Typed outcomes, bounded retries.** Each answer is judged with
//!   [`Attempt::judge`](crate::participant::Attempt::judge); retryable and
//!   in-doubt answers are retried with the configured backoff up to
//!   [`max_attempts`](CoordinatorConfig::max_attempts); each attempt has a
//!   timeout (a timeout is *in doubt*).
//! - **An unreachable store pauses the run**: a write is retried with
//!   backoff for at most the lease, then the run stops with
//!   [`TxError::Interrupted`] and the log keeps what was written;
//!   recovery (here or on another coordinator) drives it on.
//! - **Leases and version fences.** A transaction is leased to the
//!   coordinator that created or claimed it; every write names the version
//!   it read, so a coordinator that lost the transaction to another one
//!   stops at its next write ([`TxError::Interrupted`]).
//! - **Recovery** ([`recover_once`](Coordinator::recover_once),
//!   [`run_recovery`](Coordinator::run_recovery)) claims active
//!   transactions whose lease is free or expired and drives each to a
//!   terminal state from the log alone (a branch logged `Sent` is in
//!   doubt; a TCC, 2PC or 3PC transaction with no logged decision is
//!   aborted: presumed abort, except a 3PC transaction that may have sent
//!   a PreCommit, which goes forward). A transaction whose record does not decode is parked in
//!   [`NeedsIntervention`](TxState::NeedsIntervention) with the reason,
//!   and the others go on.
//! - **Parking.** What cannot finish by itself (a compensation that keeps
//!   failing, a step past a saga's pivot that keeps failing, a TCC confirm
//!   or cancel, a 2PC or 3PC commit or rollback that keeps failing) is parked in
//!   `NeedsIntervention` with the reason: never dropped, never retried
//!   forever in silence. The admin calls ([`resume`](Coordinator::resume),
//!   [`force_compensate`](Coordinator::force_compensate),
//!   [`mark_resolved`](Coordinator::mark_resolved)) take it from there.
//!
//! Observability: a `transaction` span per run (fields `name`, `tx`,
//! `protocol`) with a `branch_call` child per attempt; the metrics below,
//! labelled with the coordinator's `name`.
//!
//! | Metric | Labels | Meaning |
//! |---|---|---|
//! | `rampart_transaction_started_total` | `name` | transactions logged by `start` |
//! | `rampart_transaction_finished_total` | `name`, `state` (`committed`, `aborted`, `needs_intervention`, `interrupted`) | runs that ended so |
//! | `rampart_transaction_branch_calls_total` | `name`, `op`, `outcome` (`success`, `retryable`, `terminal`, `in_doubt`) | branch call attempts |
//! | `rampart_transaction_recovered_total` | `name` | transactions claimed by recovery |
//! | `rampart_transaction_purged_total` | `name` | finished transactions deleted by retention ([`purge_finished`](Coordinator::purge_finished), [`run_retention`](Coordinator::run_retention)) |

mod branch;
mod config;
mod error;
mod log;
mod retention;

pub use config::CoordinatorConfig;
pub use error::TxError;
pub use retention::PURGED_TOTAL;

pub(crate) use branch::{BranchSpec, CallEnd, Links, call_branch, call_linked};
pub(crate) use log::{Halt, Pending, Published, TxLog, deadline_of, next_done, read, shared};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rampart_core::metric_name;
use rampart_core::metrics::{InstanceLabels, labels};
use rampart_core::random::fresh_seed;
use rampart_retry::Rng;
use serde_json::Value;
use tracing::Instrument;

use crate::model::{BranchId, Decision, Op, Protocol, TxId, TxRecord, TxState, now_ms, outputs};
use crate::participant::{Attempt, Participant};
use crate::phased::{self, Definition};
use crate::saga::{self, Saga};
use crate::store::{StoreError, TxFilter, TxStore, TxSummary, TxUpdate, Write};
use crate::tcc::Tcc;
use crate::three_phase::ThreePhase;
use crate::two_phase::TwoPhase;

/// Counter: transactions logged by `start`.
pub const STARTED_TOTAL: &str = metric_name!("transaction", "started_total");
/// Counter: runs that ended, by `state`.
pub const FINISHED_TOTAL: &str = metric_name!("transaction", "finished_total");
/// Counter: branch call attempts, by `op` and `outcome`.
pub const BRANCH_CALLS_TOTAL: &str = metric_name!("transaction", "branch_calls_total");
/// Counter: transactions claimed by recovery.
pub const RECOVERED_TOTAL: &str = metric_name!("transaction", "recovered_total");

/// Where a transaction ended up after a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TxOutcome {
    /// The transaction.
    pub id: TxId,
    /// Its state: [`Committed`](TxState::Committed),
    /// [`Aborted`](TxState::Aborted) or
    /// [`NeedsIntervention`](TxState::NeedsIntervention).
    pub state: TxState,
    /// Why (the failure that aborted it, why it is parked).
    pub reason: Option<String>,
    /// Each action's (saga), try's (TCC), prepare's (2PC) or CanCommit's
    /// (3PC) output, for the branches where it succeeded.
    pub outputs: BTreeMap<BranchId, Value>,
}

impl TxOutcome {
    fn of(record: &TxRecord) -> Self {
        Self {
            id: record.id.clone(),
            state: record.state,
            reason: record.reason.clone(),
            outputs: outputs(&record.branches, |op| {
                matches!(op, Op::Action | Op::Try | Op::Prepare | Op::CanCommit)
            }),
        }
    }
}

/// What one recovery round did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryReport {
    /// Transactions claimed.
    pub claimed: usize,
    /// Driven to [`Committed`](TxState::Committed).
    pub committed: usize,
    /// Driven to [`Aborted`](TxState::Aborted).
    pub aborted: usize,
    /// Parked in [`NeedsIntervention`](TxState::NeedsIntervention) (their
    /// record did not decode, or they could not finish).
    pub parked: Vec<TxId>,
    /// Stopped midway (the store went away, another coordinator took it):
    /// a later round goes on.
    pub interrupted: usize,
}

/// A transaction coordinator embedded in the service: see the [module
/// docs](self). Cheap to clone; clones share everything.
///
/// ```
/// use std::sync::Arc;
/// use rampart_transaction::coordinator::{Coordinator, CoordinatorConfig};
/// use rampart_transaction::model::TxState;
/// use rampart_transaction::participant::{BranchCall, participant};
/// use rampart_transaction::saga::{Saga, Step};
/// use rampart_transaction::store::MemoryTxStore;
/// use serde_json::{Value, json};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let echo = participant(tower::service_fn(|call: BranchCall| async move {
///     Ok::<_, std::convert::Infallible>(json!({ "done": call.branch.as_str() }))
/// }));
/// let coordinator = Coordinator::new(Arc::new(MemoryTxStore::new()), CoordinatorConfig::new())?
///     .participant("inventory", echo.clone())
///     .participant("payments", echo);
/// let saga = Saga::builder("order")
///     .step(Step::new("reserve", "inventory").request(|input: &Value, _| input.clone()))
///     .step(Step::new("charge", "payments").after(["reserve"]))
///     .build()?;
/// let outcome = coordinator.start(&saga, json!({ "sku": "a-1" })).await?;
/// assert_eq!(outcome.state, TxState::Committed);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

impl fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator")
            .field("name", &self.inner.config.name)
            .field("owner", &self.inner.owner)
            .finish_non_exhaustive()
    }
}

/// What every engine reaches through a coordinator.
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn TxStore>,
    pub(crate) config: CoordinatorConfig,
    pub(crate) owner: String,
    participants: RwLock<HashMap<String, Participant>>,
    sagas: RwLock<HashMap<String, Saga>>,
    rng: Mutex<Rng>,
    pub(crate) metrics: Metrics,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(crate) fn participant(&self, name: &str) -> Option<Participant> {
        self.participants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    pub(crate) fn has_participant(&self, name: &str) -> bool {
        self.participants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(name)
    }

    pub(crate) fn saga(&self, name: &str) -> Option<Saga> {
        self.sagas
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The backoff before retry `n` (≥ 1).
    pub(crate) fn delay(&self, n: u32, previous: Option<Duration>) -> Duration {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        self.config.backoff.delay(n, previous, &mut rng)
    }
}

/// The coordinator's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    labels: InstanceLabels,
}

impl Metrics {
    pub(crate) fn branch_call(&self, op: Op, outcome: &Attempt) {
        let outcome = match outcome {
            Attempt::Success(_) => "success",
            Attempt::Retryable(_) => "retryable",
            Attempt::Terminal(_) => "terminal",
            Attempt::InDoubt(_) => "in_doubt",
        };
        let mut l = self.labels.with("op", op.as_str());
        l.push(metrics::Label::new(labels::OUTCOME, outcome));
        metrics::counter!(BRANCH_CALLS_TOTAL, l).increment(1);
    }

    fn finished(&self, state: &'static str) {
        metrics::counter!(FINISHED_TOTAL, self.labels.with(labels::STATE, state)).increment(1);
    }

    fn started(&self) {
        metrics::counter!(STARTED_TOTAL, self.labels.to_vec()).increment(1);
    }

    fn recovered(&self, n: usize) {
        metrics::counter!(RECOVERED_TOTAL, self.labels.to_vec()).increment(n as u64);
    }
}

impl Coordinator {
    /// A coordinator writing to `store`. Fails if `config` is invalid (see
    /// [`CoordinatorConfig::validate`]).
    pub fn new(store: Arc<dyn TxStore>, config: CoordinatorConfig) -> Result<Self, TxError> {
        config.validate().map_err(TxError::Config)?;
        let owner = config
            .owner
            .clone()
            .unwrap_or_else(|| format!("coordinator-{}", TxId::generate()));
        let seed = config.seed.unwrap_or_else(fresh_seed);
        let labels = InstanceLabels::new(config.name.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                owner,
                participants: RwLock::default(),
                sagas: RwLock::default(),
                rng: Mutex::new(Rng::new(seed)),
                metrics: Metrics { labels },
                config,
            }),
        })
    }

    /// Registers `participant` under `name` (replacing one of that name).
    /// Steps name the participants they call.
    pub fn participant(self, name: impl Into<String>, participant: Participant) -> Self {
        self.inner
            .participants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.into(), participant);
        self
    }

    /// Registers `saga` under its name, so that recovery can build the
    /// requests of steps a crashed run had not reached (see
    /// [`saga`](crate::saga#recovery-and-request-builders)).
    /// [`start`](Self::start) registers the saga it runs too.
    pub fn saga(self, saga: Saga) -> Self {
        self.register(saga);
        self
    }

    fn register(&self, saga: Saga) {
        self.inner
            .sagas
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(saga.name().to_owned(), saga);
    }

    /// The id this coordinator holds leases under.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// The configured recovery interval.
    pub fn recovery_interval(&self) -> Duration {
        self.inner.config.recovery_interval
    }

    /// Starts `saga` with `input` under a fresh id and runs it to the end.
    /// See [`start_with_id`](Self::start_with_id).
    pub async fn start(&self, saga: &Saga, input: Value) -> Result<TxOutcome, TxError> {
        self.start_with_id(saga, TxId::generate(), input).await
    }

    /// Starts `saga` with `input` as transaction `id` and runs it to a
    /// terminal (or parked) state.
    ///
    /// Nothing is called unless the transaction was logged first: a step
    /// naming an unknown participant fails with
    /// [`TxError::UnknownParticipant`], a store that refuses or cannot take
    /// the write with [`TxError::Store`] (an existing `id` is
    /// [`StoreError::Exists`]). A run that stops midway returns
    /// [`TxError::Interrupted`]; the transaction stays in the log and
    /// recovery finishes it.
    pub async fn start_with_id(
        &self,
        saga: &Saga,
        id: TxId,
        input: Value,
    ) -> Result<TxOutcome, TxError> {
        check_participants(&self.inner, saga.participants())?;
        self.register(saga.clone());
        let now = now_ms();
        let deadline = saga.deadline_from(now);
        self.begin(
            Protocol::Saga,
            saga.plan_value(),
            deadline,
            id,
            input,
            Fresh::Saga(saga),
        )
        .await
    }

    /// Starts the TCC transaction `tcc` with `input` under a fresh id and
    /// runs it to the end. See [`start_tcc_with_id`](Self::start_tcc_with_id).
    pub async fn start_tcc(&self, tcc: &Tcc, input: Value) -> Result<TxOutcome, TxError> {
        self.start_tcc_with_id(tcc, TxId::generate(), input).await
    }

    /// Starts the TCC transaction `tcc` with `input` as transaction `id`
    /// and runs it to a terminal (or parked) state: see [`crate::tcc`].
    /// Fails before anything is called as
    /// [`start_with_id`](Self::start_with_id) does; a run that stops midway
    /// returns [`TxError::Interrupted`] and recovery finishes it (aborting
    /// it if no decision was logged).
    pub async fn start_tcc_with_id(
        &self,
        tcc: &Tcc,
        id: TxId,
        input: Value,
    ) -> Result<TxOutcome, TxError> {
        self.start_phased(&tcc.def, id, input).await
    }

    /// Starts the 2PC transaction `tx` with `input` under a fresh id and
    /// runs it to the end. See
    /// [`start_two_phase_with_id`](Self::start_two_phase_with_id).
    pub async fn start_two_phase(&self, tx: &TwoPhase, input: Value) -> Result<TxOutcome, TxError> {
        self.start_two_phase_with_id(tx, TxId::generate(), input)
            .await
    }

    /// Starts the 2PC transaction `tx` with `input` as transaction `id` and
    /// runs it to a terminal (or parked) state: see [`crate::two_phase`].
    /// Fails before anything is called as
    /// [`start_with_id`](Self::start_with_id) does; a run that stops midway
    /// returns [`TxError::Interrupted`] and recovery finishes it (presumed
    /// abort if no decision was logged).
    pub async fn start_two_phase_with_id(
        &self,
        tx: &TwoPhase,
        id: TxId,
        input: Value,
    ) -> Result<TxOutcome, TxError> {
        self.start_phased(&tx.def, id, input).await
    }

    /// Starts the 3PC transaction `tx` with `input` under a fresh id and
    /// runs it to the end. See
    /// [`start_three_phase_with_id`](Self::start_three_phase_with_id).
    pub async fn start_three_phase(
        &self,
        tx: &ThreePhase,
        input: Value,
    ) -> Result<TxOutcome, TxError> {
        self.start_three_phase_with_id(tx, TxId::generate(), input)
            .await
    }

    /// Starts the 3PC transaction `tx` with `input` as transaction `id`
    /// and runs it to a terminal (or parked) state: see
    /// [`crate::three_phase`]. Fails before anything is called as
    /// [`start_with_id`](Self::start_with_id) does; a run that stops
    /// midway returns [`TxError::Interrupted`] and recovery finishes it
    /// (aborting it if no PreCommit was sent, going forward if one was).
    pub async fn start_three_phase_with_id(
        &self,
        tx: &ThreePhase,
        id: TxId,
        input: Value,
    ) -> Result<TxOutcome, TxError> {
        self.start_phased(&tx.def, id, input).await
    }

    async fn start_phased(
        &self,
        def: &Definition,
        id: TxId,
        input: Value,
    ) -> Result<TxOutcome, TxError> {
        check_participants(&self.inner, def.participants())?;
        let deadline = def.deadline_from(now_ms());
        let fresh = Fresh::Phased(def);
        self.begin(def.protocol(), def.plan_value(), deadline, id, input, fresh)
            .await
    }

    /// Logs a new transaction (a saga with its first steps' `Sent`
    /// records), then drives it.
    async fn begin(
        &self,
        protocol: Protocol,
        plan: Value,
        deadline: Option<u64>,
        id: TxId,
        input: Value,
        fresh: Fresh<'_>,
    ) -> Result<TxOutcome, TxError> {
        let now = now_ms();
        let branches = match fresh {
            Fresh::Saga(saga) => saga::engine::first_sends(saga, &input),
            Fresh::Phased(_) => Vec::new(),
        };
        let mut record = TxRecord {
            id,
            protocol,
            state: TxState::Running,
            decision: None,
            input,
            plan,
            reason: None,
            created_at: now,
            updated_at: now,
            deadline,
            version: 1,
            branches,
        };
        self.inner
            .store
            .create(&record, &self.inner.owner, self.inner.config.lease)
            .await?;
        record.version = 1;
        self.inner.metrics.started();
        let id = record.id.clone();
        match self.drive(record, Some(fresh)).await {
            Ok(record) => Ok(TxOutcome::of(&record)),
            Err(halt) => Err(TxError::Interrupted {
                id,
                reason: halt.reason(),
            }),
        }
    }

    /// What was decided for transaction `id`, for a participant left in
    /// doubt (a 2PC branch prepared and waiting, a TCC branch tried):
    ///
    /// | The log says | Answer |
    /// |---|---|
    /// | a logged decision (committing, committed, aborting, aborted, or parked after deciding) | `Some` of it |
    /// | no such transaction (never started, or purged) | `Some(Abort)`: presumed abort |
    /// | running, no decision yet | `None`: undecided, ask again later (a coordinator or recovery decides it; recovery aborts it) |
    /// | parked or resolved without a decision | `Some(Abort)`: nothing will commit it |
    ///
    /// Fails with [`TxError::Store`] when the log cannot be read: an
    /// unreadable log never answers `Abort`, since the decision may be
    /// `Commit`.
    pub async fn decision(&self, id: &TxId) -> Result<Option<Decision>, TxError> {
        Ok(match self.inner.store.load(id).await? {
            None => Some(Decision::Abort),
            Some(record) => match record.decision {
                Some(d) => Some(d),
                None if record.state == TxState::Running => None,
                None => Some(Decision::Abort),
            },
        })
    }

    /// Runs `record` (leased to this coordinator) with its protocol's
    /// engine, in a `transaction` span; releases the lease at the end
    /// unless the transaction is terminal (then no one claims it again).
    /// `fresh` is the definition of a transaction this run just created (a
    /// TCC, 2PC or 3PC phase one runs; a saga sends the `Sent` records it
    /// logged); `None` for a recovered one.
    async fn drive(&self, record: TxRecord, fresh: Option<Fresh<'_>>) -> Result<TxRecord, Halt> {
        let inner = &*self.inner;
        let span = tracing::info_span!("transaction", name = %inner.config.name, tx = %record.id, protocol = record.protocol.as_str());
        let id = record.id.clone();
        let result = async {
            match record.protocol {
                Protocol::Saga => {
                    saga::engine::drive(inner, record, fresh.and_then(Fresh::saga)).await
                }
                Protocol::Tcc | Protocol::TwoPhase | Protocol::ThreePhase => {
                    phased::engine::drive(inner, record, fresh.and_then(Fresh::phased)).await
                }
            }
        }
        .instrument(span)
        .await;
        match &result {
            // a terminal transaction is never claimed again: its lease
            // matters to no one, and releasing it would cost a write
            Ok(record) if record.state.is_terminal() => {
                inner.metrics.finished(record.state.as_str());
            }
            Ok(record) => {
                inner.metrics.finished(record.state.as_str());
                if let Err(e) = inner.store.release(&id, &inner.owner).await {
                    tracing::warn!(name = %inner.config.name, tx = %id, error = %e, "could not release the lease; it runs out by itself");
                }
            }
            Err(halt) => {
                inner.metrics.finished("interrupted");
                tracing::warn!(name = %inner.config.name, tx = %id, reason = %halt.reason(), "run interrupted; recovery resumes it");
            }
        }
        result
    }

    /// One recovery round: claims up to
    /// [`recovery_batch`](CoordinatorConfig::recovery_batch) active
    /// transactions whose lease is free or expired, and drives each (all at
    /// once) to a terminal or parked state from the log alone. A record
    /// that does not decode is parked (when the store takes the write) and
    /// the others go on. Fails only if the claim itself fails.
    pub async fn recover_once(&self) -> Result<RecoveryReport, StoreError> {
        let inner = &*self.inner;
        let ids = inner
            .store
            .claim(
                &inner.owner,
                inner.config.lease,
                inner.config.recovery_batch as usize,
            )
            .await?;
        let mut report = RecoveryReport {
            claimed: ids.len(),
            ..RecoveryReport::default()
        };
        if ids.is_empty() {
            return Ok(report);
        }
        inner.metrics.recovered(ids.len());
        tracing::info!(name = %inner.config.name, claimed = ids.len(), "recovering transactions");
        let mut running: Pending<'_, (TxId, Option<TxState>)> = Vec::new();
        for id in ids {
            running.push(Box::pin(async move {
                let state = self.recover_one(&id).await;
                (id, state)
            }));
        }
        while !running.is_empty() {
            let (id, state) = next_done(&mut running).await;
            match state {
                Some(TxState::Committed) => report.committed += 1,
                Some(TxState::Aborted) => report.aborted += 1,
                Some(TxState::NeedsIntervention) => report.parked.push(id),
                _ => report.interrupted += 1,
            }
        }
        Ok(report)
    }

    /// Drives one claimed transaction; its final state, `None` if the run
    /// stopped (or the transaction could not be read).
    async fn recover_one(&self, id: &TxId) -> Option<TxState> {
        let inner = &*self.inner;
        match inner.store.load(id).await {
            Ok(Some(record)) => self.drive(record, None).await.ok().map(|r| r.state),
            Ok(None) => None,
            Err(StoreError::Corrupt { reason, .. }) => {
                let reason = format!("the log record does not decode: {reason}");
                tracing::error!(name = %inner.config.name, tx = %id, %reason, "parking a corrupt transaction");
                park_unread(inner, id, reason)
                    .await
                    .then_some(TxState::NeedsIntervention)
            }
            Err(e) => {
                tracing::warn!(name = %inner.config.name, tx = %id, error = %e, "could not load a claimed transaction; a later round retries");
                None
            }
        }
    }

    /// Runs [`recover_once`](Self::recover_once) every `interval`, for
    /// ever (spawn it; drop or abort the task to stop). A failed round is
    /// logged and the loop goes on.
    pub async fn run_recovery(&self, interval: Duration) {
        loop {
            if let Err(e) = self.recover_once().await {
                tracing::warn!(name = %self.inner.config.name, error = %e, "recovery round failed; retrying next interval");
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Transactions matching `filter` (state, protocol, age), oldest
    /// first.
    pub async fn list(&self, filter: &TxFilter) -> Result<Vec<TxSummary>, TxError> {
        Ok(self.inner.store.list(filter).await?)
    }

    /// The transaction `id` as logged: its state, plan and every branch
    /// call with attempts, errors and timings.
    pub async fn inspect(&self, id: &TxId) -> Result<TxRecord, TxError> {
        self.inner
            .store
            .load(id)
            .await?
            .ok_or_else(|| TxError::NotFound(id.clone()))
    }

    /// Re-drives a parked ([`NeedsIntervention`](TxState::NeedsIntervention))
    /// transaction where it stopped: forward if it had not decided,
    /// compensating if it had decided to abort, forward past the pivot if
    /// it had passed it. A TCC or 2PC transaction goes on with the phase
    /// two of its logged decision (one parked before deciding is aborted:
    /// presumed abort). The attempt counts start afresh. Returns its
    /// record after this coordinator's next recovery round (which claims
    /// it; should another coordinator claim it first, that one drives it).
    pub async fn resume(&self, id: &TxId) -> Result<TxRecord, TxError> {
        let record = self.inspect(id).await?;
        if record.state != TxState::NeedsIntervention {
            return Err(TxError::InvalidState {
                id: id.clone(),
                state: record.state,
                action: "resume",
            });
        }
        let state = match record.decision {
            None => TxState::Running,
            Some(Decision::Commit) => TxState::Committing,
            Some(Decision::Abort) => TxState::Aborting,
        };
        self.reactivate(&record, state, None).await
    }

    /// Compensates a transaction that has not passed the point of no
    /// return (no commit decision, e.g. a saga before its pivot, a TCC or
    /// 2PC transaction before its decision; TCC cancels and 2PC rolls back
    /// every branch that may have run): running or parked. A coordinator
    /// running it stops at its next write. Returns
    /// the record after this coordinator's next recovery round.
    ///
    /// A 3PC transaction is accepted too, but once a PreCommit may have
    /// been sent, its pre-committed participants commit on their own when
    /// their commit timeout runs out: forcing the abort then can split the
    /// outcome (a refused rollback parks the transaction again, with the
    /// reason).
    pub async fn force_compensate(&self, id: &TxId) -> Result<TxRecord, TxError> {
        let record = self.inspect(id).await?;
        let allowed = (record.state.is_active() || record.state == TxState::NeedsIntervention)
            && record.decision != Some(Decision::Commit);
        if !allowed {
            return Err(TxError::InvalidState {
                id: id.clone(),
                state: record.state,
                action: "force compensation of",
            });
        }
        self.reactivate(&record, TxState::Aborting, Some(Decision::Abort))
            .await
    }

    async fn reactivate(
        &self,
        record: &TxRecord,
        state: TxState,
        decision: Option<Decision>,
    ) -> Result<TxRecord, TxError> {
        let reason = decision.map(|_| Some("compensation forced by an operator".to_owned()));
        self.inner
            .store
            .commit(
                &record.id,
                record.version,
                Write {
                    tx: Some(TxUpdate {
                        state: Some(state),
                        decision,
                        reason,
                    }),
                    branches: Vec::new(),
                },
            )
            .await?;
        // the lease of a running transaction stays with its driver, which
        // stops at its next write; ours comes with the claim
        self.recover_once().await?;
        self.inspect(&record.id).await
    }

    /// Marks a parked transaction resolved by an operator (terminal), with
    /// `note` as its reason.
    pub async fn mark_resolved(
        &self,
        id: &TxId,
        note: impl Into<String>,
    ) -> Result<TxRecord, TxError> {
        let record = self.inspect(id).await?;
        if record.state != TxState::NeedsIntervention {
            return Err(TxError::InvalidState {
                id: id.clone(),
                state: record.state,
                action: "mark resolved",
            });
        }
        self.inner
            .store
            .commit(
                id,
                record.version,
                Write {
                    tx: Some(TxUpdate {
                        state: Some(TxState::Resolved),
                        decision: None,
                        reason: Some(Some(note.into())),
                    }),
                    branches: Vec::new(),
                },
            )
            .await?;
        self.inner.metrics.finished(TxState::Resolved.as_str());
        self.inspect(id).await
    }
}

/// The definition a run that just created its transaction started from.
#[derive(Debug, Clone, Copy)]
enum Fresh<'a> {
    Saga(&'a Saga),
    Phased(&'a Definition),
}

impl<'a> Fresh<'a> {
    fn saga(self) -> Option<&'a Saga> {
        match self {
            Self::Saga(saga) => Some(saga),
            Self::Phased(_) => None,
        }
    }

    fn phased(self) -> Option<&'a Definition> {
        match self {
            Self::Phased(def) => Some(def),
            Self::Saga(_) => None,
        }
    }
}

/// Fails with [`TxError::UnknownParticipant`] if a `(branch, participant)`
/// names a participant `inner` does not have.
fn check_participants<'a>(
    inner: &Inner,
    mut participants: impl Iterator<Item = (&'a BranchId, &'a str)>,
) -> Result<(), TxError> {
    match participants.find(|(_, p)| !inner.has_participant(p)) {
        Some((step, participant)) => Err(TxError::UnknownParticipant {
            step: step.to_string(),
            participant: participant.to_owned(),
        }),
        None => Ok(()),
    }
}

/// Parks `record` in `NeedsIntervention` with `reason`.
pub(crate) async fn park(
    inner: &Inner,
    record: TxRecord,
    reason: String,
) -> Result<TxRecord, Halt> {
    tracing::error!(name = %inner.config.name, tx = %record.id, %reason, "transaction needs intervention");
    let mut log = TxLog::new(inner, record);
    log.write(Write {
        tx: Some(TxUpdate {
            state: Some(TxState::NeedsIntervention),
            decision: None,
            reason: Some(Some(reason)),
        }),
        branches: Vec::new(),
    })
    .await?;
    Ok(log.record)
}

/// Parks a transaction whose record cannot be read: its version is learnt
/// from the conflict a write at version 0 meets. `true` if parked.
async fn park_unread(inner: &Inner, id: &TxId, reason: String) -> bool {
    let write = Write {
        tx: Some(TxUpdate {
            state: Some(TxState::NeedsIntervention),
            decision: None,
            reason: Some(Some(reason)),
        }),
        branches: Vec::new(),
    };
    let parked = match inner.store.commit(id, 0, write.clone()).await {
        Ok(_) => true,
        Err(StoreError::Conflict { found, .. }) => {
            inner.store.commit(id, found, write).await.is_ok()
        }
        Err(_) => false,
    };
    if parked {
        inner.metrics.finished(TxState::NeedsIntervention.as_str());
    } else {
        tracing::error!(name = %inner.config.name, tx = %id, "could not park a corrupt transaction; its lease runs out and a later round retries");
    }
    let _ = inner.store.release(id, &inner.owner).await;
    parked
}

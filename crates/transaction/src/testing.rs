//! Crash injection (feature `testing`): prove that a coordinator and your
//! participants survive a crash at every point.
//!
//! A crash is simulated the way a process dies: the coordinator's future is
//! dropped at that point and the instance is never used again. Then a new
//! coordinator on the same store runs recovery, and the harness checks the
//! outcome.
//!
//! - [`FaultyStore::crash_after_write`] wraps any [`TxStore`] and crashes
//!   the coordinator right after its Nth durable write (`create` or
//!   `commit`) took effect.
//! - [`Injector::wrap`] wraps any participant and crashes the coordinator
//!   right after the Nth participant call took effect, before its result
//!   is logged.
//! - After a crash, every call through the wrappers hangs for ever, so
//!   nothing more happens in the dead coordinator's name (its other
//!   parallel calls included).
//! - [`CrashHarness::sweep`] runs a saga ([`CrashHarness::new`]), a TCC
//!   ([`CrashHarness::tcc`]), a 2PC ([`CrashHarness::two_phase`]) or a 3PC
//!   transaction ([`CrashHarness::three_phase`]) once for every N (writes, then
//!   participant calls) until a run completes without crashing, and
//!   checks, after recovery, that the transaction reached exactly one
//!   terminal state (`Committed` or `Aborted`, and a further recovery
//!   round changes nothing), with every action / try / prepare / CanCommit
//!   succeeded (and, TCC, 2PC and 3PC, confirmed / committed; 3PC also
//!   pre-committed) when committed, or every
//!   one that may have run compensated / cancelled / rolled back when
//!   aborted, as logged. Your `check` closure checks the participants'
//!   side (effects applied once, no action after its compensation).
//! - [`FaultyStore`] also switches outages and undecodable records on and
//!   off, to test a store going away.
//! - [`EffectLedger`] is a reference participant that records effects per
//!   `(tx, branch, op)` idempotently, as a barrier would, counts
//!   duplicates, refuses chosen steps (their action, try or prepare), and
//!   checks itself against the log (any protocol).
//!
//! Nothing here depends on the memory store: run it on the SQL store too.
//!
//! ```
//! use std::sync::Arc;
//! use rampart_transaction::coordinator::CoordinatorConfig;
//! use rampart_transaction::saga::{Saga, Step};
//! use rampart_transaction::store::MemoryTxStore;
//! use rampart_transaction::testing::{CrashHarness, EffectLedger};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ledger = EffectLedger::new(); // or your own participants
//! let saga = Saga::builder("order")
//!     .step(Step::new("reserve", "stock"))
//!     .step(Step::new("charge", "pay").after(["reserve"]))
//!     .step(Step::new("ship", "ship").after(["charge"]))
//!     .build()?;
//! ledger.refuse("ship"); // the path where a later step refuses
//! let harness = CrashHarness::new(Arc::new(MemoryTxStore::new()), CoordinatorConfig::new(), saga)
//!     .participant("stock", ledger.participant())
//!     .participant("pay", ledger.participant())
//!     .participant("ship", ledger.participant());
//! let report = harness
//!     .sweep(json!({ "sku": "a-1" }), |run| ledger.check(&run.record))
//!     .await?;
//! assert!(report.runs > 10);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::pending;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::coordinator::{Coordinator, CoordinatorConfig, TxError, TxOutcome};
use crate::model::{BranchId, BranchState, Op, Protocol, TxId, TxRecord, TxState, now_ms};
use crate::participant::{BranchCall, BranchError, Participant, participant};
use crate::phased::{Ops, PhasedPlan};
use crate::saga::{Saga, SagaPlan};
use crate::store::{BoxFuture, StoreError, TxFilter, TxStore, TxSummary, Write};
use crate::tcc::Tcc;
use crate::three_phase::ThreePhase;
use crate::two_phase::TwoPhase;

// === impl CrashSwitch ===

/// Trips once; everything wired to it hangs from then on.
#[derive(Debug, Clone)]
pub struct CrashSwitch {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for CrashSwitch {
    fn default() -> Self {
        Self {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl CrashSwitch {
    /// A switch not tripped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trips it.
    pub fn crash(&self) {
        self.tx.send_replace(true);
    }

    /// Whether it tripped.
    pub fn is_crashed(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves when it trips.
    pub async fn crashed(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// Where a run crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Nowhere.
    Never,
    /// Right after the Nth durable write (1-based) took effect.
    AfterWrite(u64),
    /// Right after the Nth participant call (1-based) took effect, before
    /// its result is logged.
    AfterCall(u64),
}

// === impl Injector ===

/// Wraps participants so that the coordinator crashes after the Nth call;
/// shares its [`CrashSwitch`] with a [`FaultyStore`].
#[derive(Debug, Clone)]
pub struct Injector {
    switch: CrashSwitch,
    calls: Arc<AtomicU64>,
    after_call: Option<u64>,
}

impl Injector {
    /// An injector tripping `switch` after call `after_call` (never if
    /// `None`).
    pub fn new(switch: CrashSwitch, after_call: Option<u64>) -> Self {
        Self {
            switch,
            calls: Arc::new(AtomicU64::new(0)),
            after_call,
        }
    }

    /// `p`, crashing after the Nth call (counted across every participant
    /// this injector wrapped) and hanging once crashed.
    pub fn wrap(&self, p: Participant) -> Participant {
        let this = self.clone();
        participant(tower::service_fn(move |call: BranchCall| {
            let (this, p) = (this.clone(), p.clone());
            async move {
                if this.switch.is_crashed() {
                    pending::<()>().await;
                }
                let result = p.oneshot(call).await;
                let n = this.calls.fetch_add(1, Ordering::SeqCst) + 1;
                if this.after_call == Some(n) || this.switch.is_crashed() {
                    this.switch.crash();
                    pending::<()>().await;
                }
                result
            }
        }))
    }

    /// Calls that returned so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

// === impl FaultyStore ===

/// A [`TxStore`] wrapper with faults switched on and off by the test: the
/// store down (every call fails [`StoreError::Unavailable`]), the next N
/// commits failing, chosen transactions that do not decode
/// ([`StoreError::Corrupt`] on load), and a crash of its coordinator right
/// after the Nth durable write (`create` or `commit` that succeeded),
/// after which every call hangs.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn TxStore>,
    down: std::sync::atomic::AtomicBool,
    failing_commits: AtomicU64,
    corrupt: Mutex<BTreeSet<TxId>>,
    failed: AtomicU64,
    crash: Option<(CrashSwitch, u64)>,
    writes: AtomicU64,
    write_delay: Duration,
}

impl FaultyStore {
    /// Wraps `inner`, with no fault on.
    pub fn new(inner: Arc<dyn TxStore>) -> Self {
        Self {
            inner,
            down: false.into(),
            failing_commits: AtomicU64::new(0),
            corrupt: Mutex::default(),
            failed: AtomicU64::new(0),
            crash: None,
            writes: AtomicU64::new(0),
            write_delay: Duration::ZERO,
        }
    }

    /// Trips `switch` right after durable write `n` (1-based) took effect;
    /// hangs every call once `switch` tripped (from here or elsewhere).
    pub fn crash_after_write(mut self, switch: CrashSwitch, n: Option<u64>) -> Self {
        self.crash = Some((switch, n.unwrap_or(0)));
        self
    }

    /// Takes the store down (`true`) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Fails the next `n` commits with [`StoreError::Unavailable`].
    pub fn fail_commits(&self, n: u64) {
        self.failing_commits.store(n, Ordering::SeqCst);
    }

    /// Makes every durable write (`create`, `commit`) first wait `delay` on
    /// the tokio clock, as a real database does: a coordinator must make
    /// progress whatever its store's writes take.
    pub fn delay_writes(mut self, delay: Duration) -> Self {
        self.write_delay = delay;
        self
    }

    /// Makes `id` fail to decode on load.
    pub fn corrupt(&self, id: &TxId) {
        self.corrupt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone());
    }

    /// Calls failed so far by a fault.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    /// Durable writes so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    fn crashed(&self) -> bool {
        self.crash.as_ref().is_some_and(|(s, _)| s.is_crashed())
    }

    fn check(&self, commit: bool) -> Result<(), StoreError> {
        let failing = commit
            && self
                .failing_commits
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if failing || self.down.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Unavailable("injected: store down".into()));
        }
        Ok(())
    }

    /// Runs `f` unless a fault says otherwise; `write`: a durable write
    /// (`Some(is a commit)`), counted toward the crash.
    async fn guarded<T>(
        &self,
        write: Option<bool>,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.crashed() {
            pending::<()>().await;
        }
        self.check(write == Some(true))?;
        if write.is_some() && !self.write_delay.is_zero() {
            tokio::time::sleep(self.write_delay).await;
        }
        let result = f.await;
        if write.is_some() && result.is_ok() {
            let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some((switch, at)) = &self.crash
                && *at == n
            {
                switch.crash();
            }
        }
        if self.crashed() {
            pending::<()>().await;
        }
        result
    }
}

impl TxStore for FaultyStore {
    fn create<'a>(
        &'a self,
        tx: &'a TxRecord,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.guarded(Some(false), self.inner.create(tx, owner, lease)))
    }

    fn load<'a>(&'a self, id: &'a TxId) -> BoxFuture<'a, Result<Option<TxRecord>, StoreError>> {
        Box::pin(self.guarded(None, async move {
            if self
                .corrupt
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(id)
            {
                return Err(StoreError::Corrupt {
                    id: id.clone(),
                    reason: "injected: the row does not decode".to_owned(),
                });
            }
            self.inner.load(id).await
        }))
    }

    fn commit<'a>(
        &'a self,
        id: &'a TxId,
        expected_version: u64,
        write: Write,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(self.guarded(Some(true), self.inner.commit(id, expected_version, write)))
    }

    fn claim<'a>(
        &'a self,
        owner: &'a str,
        lease: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<TxId>, StoreError>> {
        Box::pin(self.guarded(None, self.inner.claim(owner, lease, limit)))
    }

    fn renew<'a>(
        &'a self,
        id: &'a TxId,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.guarded(None, self.inner.renew(id, owner, lease)))
    }

    fn release<'a>(
        &'a self,
        id: &'a TxId,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.guarded(None, self.inner.release(id, owner)))
    }

    fn list<'a>(
        &'a self,
        filter: &'a TxFilter,
    ) -> BoxFuture<'a, Result<Vec<TxSummary>, StoreError>> {
        Box::pin(self.guarded(None, self.inner.list(filter)))
    }

    fn purge(&self, before: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.guarded(None, self.inner.purge(before)))
    }
}

// === impl CrashHarness ===

/// Runs a saga, TCC or 2PC transaction with a crash at a chosen point,
/// recovers it on a new coordinator, and checks the outcome. See the
/// [module docs](self).
pub struct CrashHarness {
    store: Arc<dyn TxStore>,
    config: CoordinatorConfig,
    definition: Definition,
    participants: Vec<(String, Participant)>,
    lease: Duration,
    recovery_wait: Duration,
    max_runs: u64,
}

impl fmt::Debug for CrashHarness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrashHarness")
            .field("definition", &self.definition.name())
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// What a harness runs.
#[derive(Debug, Clone)]
enum Definition {
    Saga(Saga),
    Tcc(Tcc),
    TwoPhase(TwoPhase),
    ThreePhase(ThreePhase),
}

impl Definition {
    fn name(&self) -> &str {
        match self {
            Self::Saga(d) => d.name(),
            Self::Tcc(d) => d.name(),
            Self::TwoPhase(d) => d.name(),
            Self::ThreePhase(d) => d.name(),
        }
    }
}

/// One crash-and-recover run.
#[derive(Debug, Clone)]
pub struct CrashRun {
    /// Where it was to crash.
    pub point: CrashPoint,
    /// Whether it crashed (a point past the run's end does not).
    pub crashed: bool,
    /// What `start` returned, if it returned before the crash.
    pub first: Option<Result<TxOutcome, String>>,
    /// The transaction as logged after recovery.
    pub record: TxRecord,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Runs made (each with its own transaction).
    pub runs: u64,
    /// Of which crashed.
    pub crashes: u64,
    /// Runs that ended committed.
    pub committed: u64,
    /// Runs that ended aborted.
    pub aborted: u64,
}

/// A run that broke an invariant, or could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum HarnessError {
    /// A coordinator could not be built or started.
    Tx(TxError),
    /// The store failed while the harness read it.
    Store(StoreError),
    /// An invariant did not hold.
    Violated {
        /// The run's crash point.
        point: CrashPoint,
        /// The transaction.
        id: TxId,
        /// What went wrong.
        message: String,
    },
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tx(e) => write!(f, "crash harness: {e}"),
            Self::Store(e) => write!(f, "crash harness: {e}"),
            Self::Violated { point, id, message } => {
                write!(f, "crash at {point:?}, transaction {id}: {message}")
            }
        }
    }
}

impl std::error::Error for HarnessError {}

impl CrashHarness {
    /// A harness running `saga` on `store` with coordinators built from
    /// `config` (its lease replaced by the harness's, see
    /// [`lease`](Self::lease)).
    pub fn new(store: Arc<dyn TxStore>, config: CoordinatorConfig, saga: Saga) -> Self {
        Self::of(store, config, Definition::Saga(saga))
    }

    /// A harness running the TCC transaction `tcc`; see [`new`](Self::new).
    pub fn tcc(store: Arc<dyn TxStore>, config: CoordinatorConfig, tcc: Tcc) -> Self {
        Self::of(store, config, Definition::Tcc(tcc))
    }

    /// A harness running the 2PC transaction `tx`; see [`new`](Self::new).
    pub fn two_phase(store: Arc<dyn TxStore>, config: CoordinatorConfig, tx: TwoPhase) -> Self {
        Self::of(store, config, Definition::TwoPhase(tx))
    }

    /// A harness running the 3PC transaction `tx`; see [`new`](Self::new).
    /// The participants are the coordinator's view; their own timeouts are
    /// not modelled (see [`crate::three_phase`] for what those can split).
    pub fn three_phase(store: Arc<dyn TxStore>, config: CoordinatorConfig, tx: ThreePhase) -> Self {
        Self::of(store, config, Definition::ThreePhase(tx))
    }

    fn of(store: Arc<dyn TxStore>, config: CoordinatorConfig, definition: Definition) -> Self {
        Self {
            store,
            config,
            definition,
            participants: Vec::new(),
            lease: Duration::from_millis(1),
            recovery_wait: Duration::from_secs(30),
            max_runs: 1_000,
        }
    }

    /// Registers a participant on both coordinators (wrapped by the
    /// [`Injector`] on the one that crashes).
    pub fn participant(mut self, name: impl Into<String>, p: Participant) -> Self {
        self.participants.push((name.into(), p));
        self
    }

    /// The coordinators' lease: how long (wall clock) recovery waits for
    /// the dead coordinator's lease to run out. Defaults to 1 ms.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long (wall clock) recovery may take before the run fails.
    /// Defaults to 30 s.
    pub fn recovery_wait(mut self, wait: Duration) -> Self {
        self.recovery_wait = wait;
        self
    }

    fn coordinator(
        &self,
        store: Arc<dyn TxStore>,
        injector: Option<&Injector>,
    ) -> Result<Coordinator, HarnessError> {
        let config = self.config.clone().lease(self.lease);
        let mut c = Coordinator::new(store, config).map_err(HarnessError::Tx)?;
        for (name, p) in &self.participants {
            let p = injector.map_or_else(|| p.clone(), |i| i.wrap(p.clone()));
            c = c.participant(name.clone(), p);
        }
        Ok(match &self.definition {
            Definition::Saga(saga) => c.saga(saga.clone()),
            Definition::Tcc(_) | Definition::TwoPhase(_) | Definition::ThreePhase(_) => c,
        })
    }

    /// Runs the transaction as `id` with `input`, crashing at
    /// `point`; then recovers it on a new coordinator and checks the log.
    pub async fn run(
        &self,
        point: CrashPoint,
        id: TxId,
        input: Value,
    ) -> Result<CrashRun, HarnessError> {
        let switch = CrashSwitch::new();
        let (after_write, after_call) = match point {
            CrashPoint::Never => (None, None),
            CrashPoint::AfterWrite(n) => (Some(n), None),
            CrashPoint::AfterCall(n) => (None, Some(n)),
        };
        let store: Arc<dyn TxStore> = Arc::new(
            FaultyStore::new(Arc::clone(&self.store))
                .crash_after_write(switch.clone(), after_write),
        );
        let injector = Injector::new(switch.clone(), after_call);
        let first = {
            let doomed = self.coordinator(store, Some(&injector))?;
            let run = async {
                match &self.definition {
                    Definition::Saga(d) => doomed.start_with_id(d, id.clone(), input).await,
                    Definition::Tcc(d) => doomed.start_tcc_with_id(d, id.clone(), input).await,
                    Definition::TwoPhase(d) => {
                        doomed.start_two_phase_with_id(d, id.clone(), input).await
                    }
                    Definition::ThreePhase(d) => {
                        doomed.start_three_phase_with_id(d, id.clone(), input).await
                    }
                }
            };
            tokio::select! {
                biased;
                () = switch.crashed() => None,
                outcome = run => Some(outcome),
            }
            // the crashed coordinator and its future are dropped here
        };
        let crashed = first.is_none();
        let violated = |message: String| HarnessError::Violated {
            point,
            id: id.clone(),
            message,
        };
        let first = match first {
            // stopped midway (e.g. the store went away): recovery finishes it
            Some(Err(e @ TxError::Interrupted { .. })) => Some(Err(e.to_string())),
            Some(Err(e)) => return Err(violated(format!("start failed: {e}"))),
            Some(Ok(outcome)) => Some(Ok(outcome)),
            None => None,
        };
        let recovery = self.coordinator(Arc::clone(&self.store), None)?;
        let give_up = now_ms() + crate::model::duration_ms(self.recovery_wait);
        let record = loop {
            let record = self.store.load(&id).await.map_err(HarnessError::Store)?;
            match record {
                Some(r) if !r.state.is_active() => break r,
                None if crashed => {
                    // crashed before the transaction was logged: nothing to recover
                    return Err(violated(
                        "the crash came before the transaction was logged".to_owned(),
                    ));
                }
                _ => {}
            }
            if now_ms() > give_up {
                return Err(violated("recovery did not finish in time".to_owned()));
            }
            let report = recovery.recover_once().await.map_err(HarnessError::Store)?;
            if report.claimed == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        check_log(&record).map_err(&violated)?;
        if let Some(Ok(outcome)) = &first
            && outcome.state != record.state
        {
            return Err(violated(format!(
                "start said {} but the log says {}",
                outcome.state.as_str(),
                record.state.as_str()
            )));
        }
        // exactly one terminal state: another round changes nothing
        let again = recovery.recover_once().await.map_err(HarnessError::Store)?;
        let after = self.store.load(&id).await.map_err(HarnessError::Store)?;
        if again.claimed != 0 || after.as_ref().map(|r| r.state) != Some(record.state) {
            return Err(violated(
                "a further recovery round moved the transaction".to_owned(),
            ));
        }
        Ok(CrashRun {
            point,
            crashed,
            first,
            record,
        })
    }

    /// Runs the transaction (with `input`, each run its own transaction) crashing
    /// after write 1, 2, ... until a run completes, then after participant
    /// call 1, 2, ... likewise; checks the log after each recovery and
    /// passes each run to `check` (your participants' invariants).
    pub async fn sweep<F>(&self, input: Value, mut check: F) -> Result<SweepReport, HarnessError>
    where
        F: FnMut(&CrashRun) -> Result<(), String>,
    {
        let mut report = SweepReport::default();
        let tag = TxId::generate();
        for kind in ["w", "c"] {
            for n in 1..=self.max_runs {
                let point = if kind == "w" {
                    CrashPoint::AfterWrite(n)
                } else {
                    CrashPoint::AfterCall(n)
                };
                let id = TxId::new(format!("crash-{tag}-{kind}{n}")).map_err(|e| {
                    HarnessError::Violated {
                        point,
                        id: tag.clone(),
                        message: e.to_string(),
                    }
                })?;
                let run = self.run(point, id.clone(), input.clone()).await?;
                check(&run).map_err(|message| HarnessError::Violated { point, id, message })?;
                report.runs += 1;
                report.crashes += u64::from(run.crashed);
                match run.record.state {
                    TxState::Committed => report.committed += 1,
                    _ => report.aborted += 1,
                }
                if !run.crashed {
                    break;
                }
            }
        }
        Ok(report)
    }
}

/// The ops a protocol calls its branches with, and which branches have an
/// undo op.
struct Shape {
    /// Action, try, prepare, CanCommit.
    first: Op,
    /// PreCommit (3PC only).
    pre: Option<Op>,
    /// Confirm, commit (none for a saga).
    commit: Option<Op>,
    /// Compensate, cancel, rollback.
    undo: Op,
    /// Each branch and whether it has an undo.
    branches: Vec<(BranchId, bool)>,
}

impl Shape {
    fn of(record: &TxRecord) -> Result<Self, String> {
        let undecodable = |e: serde_json::Error| format!("plan does not decode: {e}");
        if record.protocol == Protocol::Saga {
            let plan: SagaPlan =
                serde_json::from_value(record.plan.clone()).map_err(undecodable)?;
            return Ok(Self {
                first: Op::Action,
                pre: None,
                commit: None,
                undo: Op::Compensate,
                branches: plan
                    .steps
                    .into_iter()
                    .map(|s| (s.id, s.compensation.is_some()))
                    .collect(),
            });
        }
        let ops = Ops::of(record.protocol)
            .ok_or_else(|| format!("no harness for {}", record.protocol.as_str()))?;
        let plan: PhasedPlan = serde_json::from_value(record.plan.clone()).map_err(undecodable)?;
        Ok(Self {
            first: ops.first,
            pre: ops.pre,
            commit: Some(ops.commit),
            undo: ops.undo,
            branches: plan.branches.into_iter().map(|b| (b.id, true)).collect(),
        })
    }
}

/// The undo op of a forward op (action, try, prepare, CanCommit,
/// PreCommit).
fn undo_of(op: Op) -> Option<Op> {
    match op {
        Op::Action => Some(Op::Compensate),
        Op::Try => Some(Op::Cancel),
        Op::Prepare | Op::CanCommit | Op::PreCommit => Some(Op::Rollback),
        _ => None,
    }
}

/// The log-level invariants: terminal; committed → every action / try /
/// prepare succeeded, every confirm / commit succeeded and nothing undone;
/// aborted → nothing confirmed / committed, and every action / try /
/// prepare that may have run (and has an undo) compensated / cancelled /
/// rolled back.
fn check_log(record: &TxRecord) -> Result<(), String> {
    let shape = Shape::of(record)?;
    let state = |id: &BranchId, op| record.branch(id, op).map(|b| b.state);
    match record.state {
        TxState::Committed => {
            for (id, _) in &shape.branches {
                for op in std::iter::once(shape.first)
                    .chain(shape.pre)
                    .chain(shape.commit)
                {
                    let s = state(id, op);
                    if s != Some(BranchState::Succeeded) {
                        return Err(format!("committed but {op} of {id} is {s:?}"));
                    }
                }
                if state(id, shape.undo).is_some() {
                    return Err(format!("committed but {id} was undone ({})", shape.undo));
                }
            }
        }
        TxState::Aborted => {
            for (id, has_undo) in &shape.branches {
                let ran = state(id, shape.first).is_some_and(BranchState::may_have_applied);
                let undone = state(id, shape.undo) == Some(BranchState::Succeeded);
                if ran && *has_undo && !undone {
                    return Err(format!(
                        "aborted but {} of {id} was not undone ({})",
                        shape.first, shape.undo
                    ));
                }
                if let Some(op) = shape.commit
                    && state(id, op).is_some()
                {
                    return Err(format!("aborted but {op} was sent to {id}"));
                }
            }
        }
        other => {
            return Err(format!(
                "ended {} (reason: {:?}), not committed or aborted",
                other.as_str(),
                record.reason
            ));
        }
    }
    Ok(())
}

// === impl EffectLedger ===

type Key = (TxId, BranchId, Op);

/// A reference participant for crash tests: applies each `(tx, branch,
/// op)` once, as a barrier would (a repeat is counted, not re-applied; an
/// action, try or prepare arriving after its compensation, cancel or
/// rollback is counted and not applied), and refuses the actions (tries,
/// prepares) of chosen steps. Clones share the ledger; one
/// ledger can serve every step.
#[derive(Debug, Clone, Default)]
pub struct EffectLedger {
    state: Arc<Mutex<LedgerState>>,
}

#[derive(Debug, Default)]
struct LedgerState {
    applied: BTreeSet<Key>,
    received: BTreeMap<Key, u32>,
    late_actions: BTreeSet<(TxId, BranchId)>,
    refuse: BTreeSet<String>,
}

impl EffectLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses (terminally) every action, try or prepare of step `branch`
    /// from now on.
    pub fn refuse(&self, branch: &str) {
        self.lock().refuse.insert(branch.to_owned());
    }

    /// This ledger as a participant.
    pub fn participant(&self) -> Participant {
        let ledger = self.clone();
        participant(tower::service_fn(move |call: BranchCall| {
            std::future::ready(ledger.apply(call))
        }))
    }

    fn apply(&self, call: BranchCall) -> Result<Value, BranchError> {
        let mut s = self.lock();
        let key = (call.tx.clone(), call.branch.clone(), call.op);
        *s.received.entry(key.clone()).or_default() += 1;
        if let Some(undo) = undo_of(call.op) {
            if s.applied
                .contains(&(call.tx.clone(), call.branch.clone(), undo))
            {
                s.late_actions.insert((call.tx, call.branch));
                return Ok(Value::Null);
            }
            if s.refuse.contains(call.branch.as_str()) {
                return Err(BranchError::terminal(format!("{} refused", call.branch)));
            }
        }
        s.applied.insert(key);
        Ok(
            json!({ "tx": call.tx.as_str(), "branch": call.branch.as_str(), "op": call.op.as_str() }),
        )
    }

    /// The effects applied for `tx`, each once.
    pub fn applied(&self, tx: &TxId) -> Vec<(BranchId, Op)> {
        self.lock()
            .applied
            .iter()
            .filter(|(t, _, _)| t == tx)
            .map(|(_, b, op)| (b.clone(), *op))
            .collect()
    }

    /// Repeated calls received for `tx` (not applied again).
    pub fn duplicates(&self, tx: &TxId) -> u32 {
        self.lock()
            .received
            .iter()
            .filter(|((t, _, _), _)| t == tx)
            .map(|(_, n)| n - 1)
            .sum()
    }

    /// Checks the participants' side of `record` (a finished saga, TCC,
    /// 2PC or 3PC transaction): no action / try / prepare / CanCommit /
    /// PreCommit arrived after its undo; committed → every one applied (and
    /// pre-committed, confirmed / committed) and none undone; aborted → nothing confirmed / committed, every applied one
    /// undone, and refused steps not applied.
    pub fn check(&self, record: &TxRecord) -> Result<(), String> {
        let shape = Shape::of(record)?;
        let s = self.lock();
        let tx = &record.id;
        if let Some((_, b)) = s.late_actions.iter().find(|(t, _)| t == tx) {
            return Err(format!(
                "{} of {b} arrived after its {}",
                shape.first, shape.undo
            ));
        }
        let has = |b: &BranchId, op| s.applied.contains(&(tx.clone(), b.clone(), op));
        for (id, has_undo) in &shape.branches {
            let (done, undone) = (has(id, shape.first), has(id, shape.undo));
            let committed =
                shape.commit.is_none_or(|op| has(id, op)) && shape.pre.is_none_or(|op| has(id, op));
            let any_commit = shape.commit.is_some_and(|op| has(id, op));
            match record.state {
                TxState::Committed if !done || !committed || undone => {
                    return Err(format!(
                        "committed, but {id}: applied {done}, committed {committed}, undone {undone}"
                    ));
                }
                TxState::Aborted if any_commit => {
                    return Err(format!("aborted, but {id} was committed"));
                }
                TxState::Aborted if done && *has_undo && !undone => {
                    return Err(format!("aborted, but {id} applied and not undone"));
                }
                TxState::Committed | TxState::Aborted => {}
                other => return Err(format!("not finished: {}", other.as_str())),
            }
            if s.refuse.contains(id.as_str()) && done {
                return Err(format!("refused step {id} applied"));
            }
        }
        Ok(())
    }
}

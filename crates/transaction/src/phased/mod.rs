//! What TCC, 2PC and 3PC share: a set of branches, each called once in
//! phase one (TCC try, 2PC prepare, 3PC CanCommit; for 3PC then PreCommit),
//! then, after a logged decision, once in phase two (confirm or cancel,
//! commit or rollback). The definition types are re-exported by
//! [`tcc`](crate::tcc), [`two_phase`](crate::two_phase) and
//! [`three_phase`](crate::three_phase).

pub(crate) mod engine;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{BranchId, InvalidId, Op, Protocol, duration_ms};
use crate::saga::{PlanRequest, Request, RequestFn};

/// One branch of a TCC, 2PC or 3PC transaction: a participant called in
/// every phase (with [`Op::Try`], [`Op::Confirm`], [`Op::Cancel`] for TCC;
/// [`Op::Prepare`], [`Op::Commit`], [`Op::Rollback`] for 2PC;
/// [`Op::CanCommit`], [`Op::PreCommit`], [`Op::Commit`] (DoCommit) and
/// [`Op::Rollback`] (abort) for 3PC).
#[derive(Clone)]
pub struct Branch {
    id: String,
    participant: String,
    commit: Option<String>,
    undo: Option<String>,
    timeout: Duration,
    request: Request,
}

impl fmt::Debug for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Branch")
            .field("id", &self.id)
            .field("participant", &self.participant)
            .field("commit", &self.commit)
            .field("undo", &self.undo)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Branch {
    /// A branch named `id` (its [`BranchId`]) whose calls of both phases go
    /// to the participant named `participant`. Its request defaults to the
    /// transaction input; its timeout to 30 s per attempt.
    pub fn new(id: impl Into<String>, participant: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            participant: participant.into(),
            commit: None,
            undo: None,
            timeout: Duration::from_secs(30),
            request: Request::Input,
        }
    }

    /// Sends the confirm (TCC) or commit (2PC, 3PC DoCommit) to another
    /// participant.
    pub fn commit_with(mut self, participant: impl Into<String>) -> Self {
        self.commit = Some(participant.into());
        self
    }

    /// Sends the cancel (TCC) or rollback (2PC, 3PC abort) to another
    /// participant.
    pub fn undo_with(mut self, participant: impl Into<String>) -> Self {
        self.undo = Some(participant.into());
        self
    }

    /// Each attempt's timeout (an attempt that takes longer is in doubt).
    /// Must be longer than zero. Defaults to 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds the phase-one request from the input and the outputs of the
    /// branches whose phase one already succeeded (in a sequential
    /// transaction, the branches before this one; in a parallel one, none).
    /// Called once at the start; the result is logged.
    pub fn request<F>(mut self, build: F) -> Self
    where
        F: Fn(&Value, &BTreeMap<BranchId, Value>) -> Value + Send + Sync + 'static,
    {
        self.request = Request::Build(Arc::new(build));
        self
    }

    /// A fixed phase-one request, logged in the plan.
    pub fn request_value(mut self, request: Value) -> Self {
        self.request = Request::Value(request);
        self
    }
}

/// Defines a protocol's definition type and its builder over
/// [`DefinitionBuilder`]: `definition!(Tcc, TccBuilder, Protocol::Tcc,
/// "TCC", "Tries")`.
macro_rules! definition {
    ($def:ident, $builder:ident, $protocol:expr, $what:literal, $verb:literal) => {
        #[doc = concat!("Builds a [`", stringify!($def), "`]: see [`", stringify!($def), "::builder`].")]
        #[derive(Debug, Clone)]
        pub struct $builder {
            def: $crate::phased::DefinitionBuilder,
        }

        impl $builder {
            /// Adds a branch.
            pub fn branch(mut self, branch: $crate::phased::Branch) -> Self {
                self.def.branch(branch);
                self
            }

            #[doc = concat!($verb, " the branches one after the other, in the order added, stopping at the first that fails (the later ones are never reached, so never undone). Defaults to all at once.")]
            pub fn sequential(mut self) -> Self {
                self.def.sequential();
                self
            }

            /// A global timeout on the first phase, from the start: logged
            /// as a deadline (so it holds across recovery); no first-phase
            /// attempt runs past it, and reaching it decides abort. Once a
            /// commit decision is logged the deadline no longer applies:
            /// phase two goes on until it succeeds or the transaction is
            /// parked. Must be longer than zero. Defaults to none.
            pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
                self.def.timeout(timeout);
                self
            }

            /// Checks the definition: a valid name and branch ids, at
            /// least one branch, unique ids, timeouts (per attempt and
            /// global) longer than zero, participant names not empty.
            pub fn build(self) -> Result<$def, $crate::phased::DefinitionError> {
                Ok($def {
                    def: self.def.build($protocol)?,
                })
            }
        }

        #[doc = concat!("A checked ", $what, " definition: build one with [`", stringify!($def), "::builder`]. Cheap to clone.")]
        #[derive(Debug, Clone)]
        pub struct $def {
            pub(crate) def: $crate::phased::Definition,
        }

        impl $def {
            #[doc = concat!("A ", $what, " definition named `name` (logged in its plan).")]
            pub fn builder(name: impl Into<String>) -> $builder {
                $builder {
                    def: $crate::phased::DefinitionBuilder::new(name.into()),
                }
            }

            /// Its name.
            pub fn name(&self) -> &str {
                self.def.name()
            }

            /// The plan as written into the log.
            pub fn plan_value(&self) -> serde_json::Value {
                self.def.plan_value()
            }
        }
    };
}

pub(crate) use definition;

/// An invalid TCC, 2PC or 3PC definition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DefinitionError {
    /// The transaction's name or a branch id is not a valid id.
    InvalidId(InvalidId),
    /// No branches.
    NoBranches,
    /// Two branches share this id.
    DuplicateBranch(String),
    /// A branch's timeout is zero.
    ZeroTimeout(String),
    /// A branch names an empty participant.
    EmptyParticipant(String),
    /// The global timeout is zero.
    ZeroGlobalTimeout,
    /// The plan does not serialize.
    Plan(String),
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidId(e) => write!(f, "{e}"),
            Self::NoBranches => f.write_str("a transaction needs at least one branch"),
            Self::DuplicateBranch(b) => write!(f, "two branches are named {b:?}"),
            Self::ZeroTimeout(b) => write!(f, "branch {b:?} has a zero timeout"),
            Self::EmptyParticipant(b) => write!(f, "branch {b:?} names an empty participant"),
            Self::ZeroGlobalTimeout => f.write_str("the global timeout is zero"),
            Self::Plan(e) => write!(f, "the plan does not serialize: {e}"),
        }
    }
}

impl std::error::Error for DefinitionError {}

/// The builder `TccBuilder`, `TwoPhaseBuilder` and `ThreePhaseBuilder`
/// wrap.
#[derive(Debug, Clone)]
pub(crate) struct DefinitionBuilder {
    name: String,
    branches: Vec<Branch>,
    sequential: bool,
    timeout: Option<Duration>,
}

impl DefinitionBuilder {
    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            branches: Vec::new(),
            sequential: false,
            timeout: None,
        }
    }

    pub(crate) fn timeout(&mut self, timeout: Duration) {
        self.timeout = Some(timeout);
    }

    pub(crate) fn branch(&mut self, branch: Branch) {
        self.branches.push(branch);
    }

    pub(crate) fn sequential(&mut self) {
        self.sequential = true;
    }

    /// Checks the definition: a valid name and branch ids, at least one
    /// branch, unique ids, timeouts longer than zero, participant names
    /// not empty.
    pub(crate) fn build(self, protocol: Protocol) -> Result<Definition, DefinitionError> {
        BranchId::new(self.name.clone()).map_err(DefinitionError::InvalidId)?;
        if self.branches.is_empty() {
            return Err(DefinitionError::NoBranches);
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(DefinitionError::ZeroGlobalTimeout);
        }
        let mut seen = HashSet::new();
        let mut plan_branches = Vec::new();
        let mut builders = Vec::new();
        for b in &self.branches {
            let id = BranchId::new(b.id.clone()).map_err(DefinitionError::InvalidId)?;
            if !seen.insert(b.id.clone()) {
                return Err(DefinitionError::DuplicateBranch(b.id.clone()));
            }
            if b.timeout.is_zero() {
                return Err(DefinitionError::ZeroTimeout(b.id.clone()));
            }
            let empty = |p: &Option<String>| p.as_deref() == Some("");
            if b.participant.is_empty() || empty(&b.commit) || empty(&b.undo) {
                return Err(DefinitionError::EmptyParticipant(b.id.clone()));
            }
            if let Some(f) = b.request.builder() {
                builders.push((id.clone(), f));
            }
            plan_branches.push(PlanBranch {
                id,
                participant: b.participant.clone(),
                commit: b.commit.clone().unwrap_or_else(|| b.participant.clone()),
                undo: b.undo.clone().unwrap_or_else(|| b.participant.clone()),
                timeout_ms: duration_ms(b.timeout),
                request: b.request.plan(),
            });
        }
        let plan = PhasedPlan {
            name: self.name,
            sequential: self.sequential,
            branches: plan_branches,
        };
        let plan_value =
            serde_json::to_value(&plan).map_err(|e| DefinitionError::Plan(e.to_string()))?;
        Ok(Definition {
            inner: Arc::new(DefinitionInner {
                protocol,
                plan,
                plan_value,
                builders,
                timeout: self.timeout,
            }),
        })
    }
}

/// A checked TCC, 2PC or 3PC definition. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Definition {
    inner: Arc<DefinitionInner>,
}

struct DefinitionInner {
    protocol: Protocol,
    plan: PhasedPlan,
    plan_value: Value,
    builders: Vec<(BranchId, Arc<RequestFn>)>,
    timeout: Option<Duration>,
}

impl fmt::Debug for Definition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Definition")
            .field("protocol", &self.inner.protocol)
            .field("plan", &self.inner.plan_value)
            .finish()
    }
}

impl Definition {
    pub(crate) fn name(&self) -> &str {
        &self.inner.plan.name
    }

    pub(crate) fn protocol(&self) -> Protocol {
        self.inner.protocol
    }

    pub(crate) fn plan_value(&self) -> Value {
        self.inner.plan_value.clone()
    }

    /// The deadline (ms since the epoch) of a transaction started at
    /// `now`, if the definition has a global timeout.
    pub(crate) fn deadline_from(&self, now: u64) -> Option<u64> {
        self.inner
            .timeout
            .map(|t| now.saturating_add(duration_ms(t)))
    }

    /// `(branch, participant)` for every call of both phases.
    pub(crate) fn participants(&self) -> impl Iterator<Item = (&BranchId, &str)> {
        self.inner.plan.branches.iter().flat_map(|b| {
            [
                (&b.id, b.participant.as_str()),
                (&b.id, b.commit.as_str()),
                (&b.id, b.undo.as_str()),
            ]
        })
    }

    pub(crate) fn builder_of(&self, branch: &BranchId) -> Option<Arc<RequestFn>> {
        self.inner
            .builders
            .iter()
            .find(|(id, _)| id == branch)
            .map(|(_, f)| Arc::clone(f))
    }
}

/// The ops a protocol calls its branches with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ops {
    /// Phase one: try, prepare, CanCommit.
    pub(crate) first: Op,
    /// 3PC only: PreCommit, sent to every branch once all voted yes and
    /// before the commit decision.
    pub(crate) pre: Option<Op>,
    /// Phase two after a commit decision: confirm, commit.
    pub(crate) commit: Op,
    /// Phase two after an abort decision: cancel, rollback.
    pub(crate) undo: Op,
}

impl Ops {
    /// The ops of `protocol`, if it is TCC, 2PC or 3PC.
    pub(crate) fn of(protocol: Protocol) -> Option<Self> {
        match protocol {
            Protocol::Tcc => Some(Self {
                first: Op::Try,
                pre: None,
                commit: Op::Confirm,
                undo: Op::Cancel,
            }),
            Protocol::TwoPhase => Some(Self {
                first: Op::Prepare,
                pre: None,
                commit: Op::Commit,
                undo: Op::Rollback,
            }),
            Protocol::ThreePhase => Some(Self {
                first: Op::CanCommit,
                pre: Some(Op::PreCommit),
                commit: Op::Commit,
                undo: Op::Rollback,
            }),
            Protocol::Saga => None,
        }
    }
}

// === the plan, as logged ===

/// The plan in [`TxRecord::plan`](crate::model::TxRecord::plan) of a TCC,
/// 2PC or 3PC transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PhasedPlan {
    pub(crate) name: String,
    pub(crate) sequential: bool,
    pub(crate) branches: Vec<PlanBranch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanBranch {
    pub(crate) id: BranchId,
    pub(crate) participant: String,
    pub(crate) commit: String,
    pub(crate) undo: String,
    pub(crate) timeout_ms: u64,
    pub(crate) request: PlanRequest,
}

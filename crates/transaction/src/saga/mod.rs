//! Sagas: steps with an action and a compensation, run in dependency
//! order by a [`Coordinator`](crate::coordinator::Coordinator); on a
//! failure, every action that ran (or may have run) is compensated in
//! reverse dependency order.
//!
//! ```
//! use std::time::Duration;
//! use rampart_transaction::saga::{Saga, Step};
//! use serde_json::{Value, json};
//!
//! // reserve, then charge and ship in parallel, then notify
//! let saga = Saga::builder("order")
//!     .step(Step::new("reserve", "inventory")
//!         .request(|input: &Value, _| json!({ "sku": input["sku"] })))
//!     .step(Step::new("charge", "payments").after(["reserve"])
//!         .request(|input: &Value, outputs| json!({
//!             "amount": input["amount"],
//!             "hold": outputs["reserve"]["hold"],
//!         })))
//!     .step(Step::new("ship", "shipping").after(["reserve"]))
//!     .step(Step::new("notify", "mail").after(["charge", "ship"]).without_compensation())
//!     .pivot("charge")
//!     .timeout(Duration::from_secs(30))
//!     .build();
//! // `ship` runs in parallel with the pivot: refused
//! assert!(saga.is_err());
//! ```
//!
//! # Semantics
//!
//! - A step runs once every step it comes [`after`](Step::after) has
//!   succeeded; steps whose dependencies are met run concurrently.
//! - Each call is logged `Sent` (with its request) before it is sent.
//!   Retryable and in-doubt answers are retried with backoff, up to the
//!   coordinator's [`max_attempts`](crate::coordinator::CoordinatorConfig::max_attempts).
//! - Before the [pivot](SagaBuilder::pivot) (or without one), a step that
//!   is refused, or still failing after the attempts, or the
//!   [global timeout](SagaBuilder::timeout), makes the saga compensate:
//!   every action logged `Succeeded`, `Sent` or `InDoubt` (it may have
//!   run) gets its compensation, a step only after every step that came
//!   after it. Steps already running finish first (no action is sent
//!   after its compensation).
//! - The pivot's success is logged together with the commit decision
//!   (state `Committing`): from then on, steps are retried forward, never
//!   compensated; one that keeps failing parks the saga in
//!   `NeedsIntervention`. The pivot must be a cut of the DAG: every other
//!   step comes before it or after it.
//! - A compensation receives `{"request": <the action's request>,
//!   "output": <the action's output, or null>}` (null when the action is
//!   in doubt). It is retried with backoff until it succeeds; after the
//!   attempts (or at once if refused) the saga is parked in
//!   `NeedsIntervention` with the reason.
//!
//! # Recovery and request builders
//!
//! Everything recovery needs is in the log: the plan written into
//! [`TxRecord::plan`](crate::model::TxRecord::plan) names each step's
//! participants, dependencies, timeout, the pivot and the deadline, and
//! says where each request comes from: the transaction input (the
//! default), a fixed value (logged in the plan), or a builder. A request
//! is built once, when its step is first ready, and logged in the `Sent`
//! record before the first call: every retry and every recovery re-sends
//! the logged request, and a compensation is built from logged values
//! only.
//!
//! A builder is user code, so it is never stored. When a crash happens
//! before a step's request was built, recovery builds it from the logged
//! input and outputs, **only if** a saga of the same name is registered on
//! the recovering coordinator ([`Coordinator::saga`](crate::coordinator::Coordinator::saga);
//! [`start`](crate::coordinator::Coordinator::start) registers the saga it
//! runs). Builders must be pure functions of the input and outputs. If
//! none is registered, a step before the pivot fails (the saga
//! compensates, with the reason) and a step after the pivot parks the
//! saga until one is registered and it is [resumed](crate::coordinator::Coordinator::resume).

pub(crate) mod engine;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{BranchId, InvalidId, duration_ms};

/// A request builder: the step's request from the transaction input and
/// the outputs of the steps that succeeded so far.
pub type RequestFn = dyn Fn(&Value, &BTreeMap<BranchId, Value>) -> Value + Send + Sync;

/// One step of a saga: an action, its compensation, what it comes after.
#[derive(Clone)]
pub struct Step {
    id: String,
    action: String,
    compensation: Option<String>,
    after: Vec<String>,
    timeout: Duration,
    request: Request,
}

/// Where a step's (or a TCC / 2PC branch's) request comes from, as
/// defined.
#[derive(Clone)]
pub(crate) enum Request {
    Input,
    Value(Value),
    Build(Arc<RequestFn>),
}

impl Request {
    /// How the plan logs it.
    pub(crate) fn plan(&self) -> PlanRequest {
        match self {
            Self::Input => PlanRequest::Input,
            Self::Value(v) => PlanRequest::Value { value: v.clone() },
            Self::Build(_) => PlanRequest::Builder,
        }
    }

    /// Its builder, if it has one.
    pub(crate) fn builder(&self) -> Option<Arc<RequestFn>> {
        match self {
            Self::Build(f) => Some(Arc::clone(f)),
            Self::Input | Self::Value(_) => None,
        }
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("id", &self.id)
            .field("action", &self.action)
            .field("compensation", &self.compensation)
            .field("after", &self.after)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Step {
    /// A step named `id` (its [`BranchId`]) whose action and compensation
    /// are both calls to the participant named `participant` (with
    /// [`Op::Action`](crate::model::Op::Action) and
    /// [`Op::Compensate`](crate::model::Op::Compensate)). Its request
    /// defaults to the transaction input; its timeout to 30 s per attempt.
    pub fn new(id: impl Into<String>, participant: impl Into<String>) -> Self {
        let participant = participant.into();
        Self {
            id: id.into(),
            compensation: Some(participant.clone()),
            action: participant,
            after: Vec::new(),
            timeout: Duration::from_secs(30),
            request: Request::Input,
        }
    }

    /// Sends the compensation to another participant.
    pub fn compensation(mut self, participant: impl Into<String>) -> Self {
        self.compensation = Some(participant.into());
        self
    }

    /// The step needs no compensation (a read, a notification): nothing is
    /// called for it when the saga compensates.
    pub fn without_compensation(mut self) -> Self {
        self.compensation = None;
        self
    }

    /// Runs only after these steps succeeded.
    pub fn after<I, S>(mut self, steps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.after.extend(steps.into_iter().map(Into::into));
        self
    }

    /// Each attempt's timeout (an attempt that takes longer is in doubt).
    /// Must be longer than zero. Defaults to 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds the request from the input and the earlier outputs: called
    /// once, when the step is first ready; the result is logged and
    /// re-sent as is. See [recovery](self#recovery-and-request-builders).
    pub fn request<F>(mut self, build: F) -> Self
    where
        F: Fn(&Value, &BTreeMap<BranchId, Value>) -> Value + Send + Sync + 'static,
    {
        self.request = Request::Build(Arc::new(build));
        self
    }

    /// A fixed request, logged in the plan.
    pub fn request_value(mut self, request: Value) -> Self {
        self.request = Request::Value(request);
        self
    }
}

/// Builds a [`Saga`]: see [`Saga::builder`].
#[derive(Debug, Clone)]
pub struct SagaBuilder {
    name: String,
    steps: Vec<Step>,
    pivot: Option<String>,
    timeout: Option<Duration>,
}

impl SagaBuilder {
    /// Adds a step.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// The pivot: once it succeeded, the saga goes forward only (no
    /// compensation). Every other step must come before it or after it
    /// (directly or not). Defaults to none (any failure compensates).
    pub fn pivot(mut self, step: impl Into<String>) -> Self {
        self.pivot = Some(step.into());
        self
    }

    /// The global timeout: a saga that has not passed its pivot by then
    /// compensates. Measured from the start (the deadline is logged, so it
    /// holds across recovery). Defaults to none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Checks the definition: a valid name and step ids, at least one
    /// step, unique ids, known and acyclic dependencies, a known pivot that
    /// cuts the DAG, timeouts longer than zero, participant names not
    /// empty.
    pub fn build(self) -> Result<Saga, SagaError> {
        BranchId::new(self.name.clone()).map_err(SagaError::InvalidId)?;
        if self.steps.is_empty() {
            return Err(SagaError::NoSteps);
        }
        let mut index = HashMap::new();
        let mut ids = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let id = BranchId::new(step.id.clone()).map_err(SagaError::InvalidId)?;
            if index.insert(step.id.clone(), i).is_some() {
                return Err(SagaError::DuplicateStep(step.id.clone()));
            }
            ids.push(id);
            if step.timeout.is_zero() {
                return Err(SagaError::ZeroTimeout(step.id.clone()));
            }
            if step.action.is_empty() || step.compensation.as_deref() == Some("") {
                return Err(SagaError::EmptyParticipant(step.id.clone()));
            }
        }
        let mut deps = Vec::new();
        for step in &self.steps {
            let mut d = Vec::new();
            for after in &step.after {
                match index.get(after) {
                    Some(&j) if after != &step.id => d.push(j),
                    _ => {
                        return Err(SagaError::UnknownDependency {
                            step: step.id.clone(),
                            after: after.clone(),
                        });
                    }
                }
            }
            deps.push(d);
        }
        let graph = Graph::new(&deps).ok_or_else(|| SagaError::Cycle(self.name.clone()))?;
        let pivot = match &self.pivot {
            None => None,
            Some(p) => {
                let &pi = index
                    .get(p)
                    .ok_or_else(|| SagaError::UnknownPivot(p.clone()))?;
                for (i, step) in self.steps.iter().enumerate() {
                    if i != pi && !graph.reaches(i, pi) && !graph.reaches(pi, i) {
                        return Err(SagaError::PivotNotACut {
                            pivot: p.clone(),
                            step: step.id.clone(),
                        });
                    }
                }
                Some(ids[pi].clone())
            }
        };
        let plan = SagaPlan {
            saga: self.name.clone(),
            steps: self
                .steps
                .iter()
                .zip(&ids)
                .zip(&deps)
                .map(|((step, id), d)| PlanStep {
                    id: id.clone(),
                    action: step.action.clone(),
                    compensation: step.compensation.clone(),
                    after: d.iter().map(|&j| ids[j].clone()).collect(),
                    timeout_ms: duration_ms(step.timeout),
                    request: step.request.plan(),
                })
                .collect(),
            pivot,
            timeout_ms: self.timeout.map(duration_ms),
        };
        let plan_value = serde_json::to_value(&plan).map_err(|e| SagaError::Plan(e.to_string()))?;
        Ok(Saga {
            inner: Arc::new(SagaDef {
                name: self.name,
                builders: self
                    .steps
                    .iter()
                    .zip(&ids)
                    .filter_map(|(s, id)| Some((id.clone(), s.request.builder()?)))
                    .collect(),
                plan: Arc::new(plan),
                plan_value,
                timeout: self.timeout,
            }),
        })
    }
}

/// A checked saga definition: build one with [`Saga::builder`], run it
/// with [`Coordinator::start`](crate::coordinator::Coordinator::start).
/// Cheap to clone.
#[derive(Clone)]
pub struct Saga {
    inner: Arc<SagaDef>,
}

struct SagaDef {
    name: String,
    builders: HashMap<BranchId, Arc<RequestFn>>,
    plan: Arc<SagaPlan>,
    plan_value: Value,
    timeout: Option<Duration>,
}

impl fmt::Debug for Saga {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saga")
            .field("name", &self.inner.name)
            .field("plan", &self.inner.plan_value)
            .finish()
    }
}

impl Saga {
    /// A saga definition named `name` (logged in its plan: recovery finds
    /// the request builders by it).
    pub fn builder(name: impl Into<String>) -> SagaBuilder {
        SagaBuilder {
            name: name.into(),
            steps: Vec::new(),
            pivot: None,
            timeout: None,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The plan as written into the log.
    pub fn plan_value(&self) -> Value {
        self.inner.plan_value.clone()
    }

    /// `(step, participant)` for every action and compensation.
    pub(crate) fn participants(&self) -> impl Iterator<Item = (&BranchId, &str)> {
        self.inner.plan.steps.iter().flat_map(|s| {
            std::iter::once((&s.id, s.action.as_str()))
                .chain(s.compensation.as_deref().map(|c| (&s.id, c)))
        })
    }

    pub(crate) fn deadline_from(&self, now_ms: u64) -> Option<u64> {
        self.inner
            .timeout
            .map(|t| now_ms.saturating_add(duration_ms(t)))
    }

    /// The plan, decoded.
    pub(crate) fn plan(&self) -> &Arc<SagaPlan> {
        &self.inner.plan
    }

    pub(crate) fn builder_of(&self, step: &BranchId) -> Option<Arc<RequestFn>> {
        self.inner.builders.get(step).cloned()
    }
}

/// An invalid saga definition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SagaError {
    /// The saga's name or a step id is not a valid id.
    InvalidId(InvalidId),
    /// No steps.
    NoSteps,
    /// Two steps share this id.
    DuplicateStep(String),
    /// A step comes after one that does not exist (or itself).
    UnknownDependency {
        /// The step.
        step: String,
        /// What it named.
        after: String,
    },
    /// The dependencies of the saga (named) form a cycle.
    Cycle(String),
    /// The pivot names no step.
    UnknownPivot(String),
    /// A step neither comes before nor after the pivot.
    PivotNotACut {
        /// The pivot.
        pivot: String,
        /// The step running alongside it.
        step: String,
    },
    /// A step's timeout is zero.
    ZeroTimeout(String),
    /// A step names an empty participant.
    EmptyParticipant(String),
    /// The plan does not serialize.
    Plan(String),
}

impl fmt::Display for SagaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidId(e) => write!(f, "{e}"),
            Self::NoSteps => f.write_str("a saga needs at least one step"),
            Self::DuplicateStep(s) => write!(f, "two steps are named {s:?}"),
            Self::UnknownDependency { step, after } => {
                write!(f, "step {step:?} comes after unknown step {after:?}")
            }
            Self::Cycle(name) => write!(
                f,
                "the steps of saga {name:?} depend on each other in a cycle"
            ),
            Self::UnknownPivot(p) => write!(f, "the pivot {p:?} is not a step"),
            Self::PivotNotACut { pivot, step } => write!(
                f,
                "step {step:?} comes neither before nor after the pivot {pivot:?}"
            ),
            Self::ZeroTimeout(s) => write!(f, "step {s:?} has a zero timeout"),
            Self::EmptyParticipant(s) => write!(f, "step {s:?} names an empty participant"),
            Self::Plan(e) => write!(f, "the plan does not serialize: {e}"),
        }
    }
}

impl std::error::Error for SagaError {}

// === the plan, as logged ===

/// The saga's plan in [`TxRecord::plan`](crate::model::TxRecord::plan).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SagaPlan {
    pub(crate) saga: String,
    pub(crate) steps: Vec<PlanStep>,
    pub(crate) pivot: Option<BranchId>,
    pub(crate) timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanStep {
    pub(crate) id: BranchId,
    pub(crate) action: String,
    pub(crate) compensation: Option<String>,
    pub(crate) after: Vec<BranchId>,
    pub(crate) timeout_ms: u64,
    pub(crate) request: PlanRequest,
}

/// Where a step's request comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum PlanRequest {
    /// The transaction input.
    Input,
    /// This value.
    Value { value: Value },
    /// The builder registered for the step under the saga's name.
    Builder,
}

impl PlanRequest {
    /// The request this source gives: the input, the logged value, or
    /// the builder `build()` finds, called with the input and `outputs()`
    /// (both looked up only for a builder). `None` when a builder is
    /// needed and there is none.
    pub(crate) fn resolve(
        &self,
        input: &Value,
        build: impl FnOnce() -> Option<Arc<RequestFn>>,
        outputs: impl FnOnce() -> BTreeMap<BranchId, Value>,
    ) -> Option<Value> {
        Some(match self {
            Self::Input => input.clone(),
            Self::Value { value } => value.clone(),
            Self::Builder => build()?(input, &outputs()),
        })
    }
}

/// The dependency DAG by index: `deps[i]` are the steps `i` comes after.
#[derive(Debug, Clone)]
pub(crate) struct Graph {
    /// `below[i][j]`: `j` (transitively) comes after `i`.
    after: Vec<HashSet<usize>>,
}

impl Graph {
    /// `None` if `deps` has a cycle.
    pub(crate) fn new(deps: &[Vec<usize>]) -> Option<Self> {
        let n = deps.len();
        // Kahn's order, then descendants in reverse order
        let mut indegree: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut children = vec![Vec::new(); n];
        for (i, d) in deps.iter().enumerate() {
            for &j in d {
                children[j].push(i);
            }
        }
        let mut order: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut k = 0;
        while k < order.len() {
            let i = order[k];
            k += 1;
            for &c in &children[i] {
                indegree[c] -= 1;
                if indegree[c] == 0 {
                    order.push(c);
                }
            }
        }
        if order.len() != n {
            return None;
        }
        let mut after = vec![HashSet::new(); n];
        for &i in order.iter().rev() {
            let mut set = HashSet::new();
            for &c in &children[i] {
                set.insert(c);
                set.extend(after[c].iter().copied());
            }
            after[i] = set;
        }
        Some(Self { after })
    }

    /// `to` comes (transitively) after `from`.
    pub(crate) fn reaches(&self, from: usize, to: usize) -> bool {
        self.after[from].contains(&to)
    }

    /// Every step that comes (transitively) after `i`.
    pub(crate) fn descendants(&self, i: usize) -> &HashSet<usize> {
        &self.after[i]
    }
}

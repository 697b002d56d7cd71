//! Two-phase commit: every branch is asked to prepare (in parallel, or one
//! after the other if [sequential](TwoPhaseBuilder::sequential)); the
//! decision is logged durably **before** phase two —
//! [`Commit`](crate::model::Decision::Commit) when every branch prepared,
//! [`Abort`](crate::model::Decision::Abort) when one refused or could not
//! be reached — then every branch is committed, or every branch that
//! prepared or may have prepared is rolled back. Run one with
//! [`Coordinator::start_two_phase`](crate::coordinator::Coordinator::start_two_phase).
//!
//! **Presumed abort.** A transaction without a logged decision whose
//! coordinator stopped is aborted by recovery (everything that may have
//! been prepared is rolled back), and
//! [`Coordinator::decision`](crate::coordinator::Coordinator::decision)
//! answers [`Abort`](crate::model::Decision::Abort) for an id the log does
//! not know: a participant left in doubt may ask, and rolls back on
//! `Abort`.
//!
//! Under failure: commits and rollbacks are retried with the coordinator's
//! backoff up to
//! [`max_attempts`](crate::coordinator::CoordinatorConfig::max_attempts);
//! one that is refused or still fails parks the transaction in
//! [`NeedsIntervention`](crate::model::TxState::NeedsIntervention) with
//! its decision logged. Prepares are never re-sent by recovery. Each
//! commit and rollback is sent `{"request": <the prepare's request>,
//! "output": <the prepare's answer or null>}`.
//!
//! ```
//! use std::sync::Arc;
//! use rampart_transaction::coordinator::{Coordinator, CoordinatorConfig};
//! use rampart_transaction::model::{Decision, TxState};
//! use rampart_transaction::participant::{BranchCall, participant};
//! use rampart_transaction::store::MemoryTxStore;
//! use rampart_transaction::two_phase::{Branch, TwoPhase};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = participant(tower::service_fn(|call: BranchCall| async move {
//!     Ok::<_, std::convert::Infallible>(json!({ "op": call.op.as_str() }))
//! }));
//! let coordinator = Coordinator::new(Arc::new(MemoryTxStore::new()), CoordinatorConfig::new())?
//!     .participant("orders-db", db.clone())
//!     .participant("ledger-db", db);
//! let tx = TwoPhase::builder("transfer")
//!     .branch(Branch::new("orders", "orders-db"))
//!     .branch(Branch::new("ledger", "ledger-db"))
//!     .build()?;
//! let outcome = coordinator.start_two_phase(&tx, json!({ "amount": 5 })).await?;
//! assert_eq!(outcome.state, TxState::Committed);
//! assert_eq!(coordinator.decision(&outcome.id).await?, Some(Decision::Commit));
//! # Ok(()) }
//! ```

use crate::model::Protocol;
use crate::phased::{Definition, DefinitionBuilder};

pub use crate::phased::{Branch, DefinitionError};

/// Builds a [`TwoPhase`]: see [`TwoPhase::builder`].
#[derive(Debug, Clone)]
pub struct TwoPhaseBuilder {
    def: DefinitionBuilder,
}

impl TwoPhaseBuilder {
    /// Adds a branch (prepare, commit, rollback).
    pub fn branch(mut self, branch: Branch) -> Self {
        self.def.branch(branch);
        self
    }

    /// Prepares the branches one after the other, in the order added,
    /// stopping at the first that fails (the later ones are never
    /// prepared, so never rolled back). Defaults to all at once.
    pub fn sequential(mut self) -> Self {
        self.def.sequential();
        self
    }

    /// Checks the definition: a valid name and branch ids, at least one
    /// branch, unique ids, timeouts longer than zero, participant names
    /// not empty.
    pub fn build(self) -> Result<TwoPhase, DefinitionError> {
        Ok(TwoPhase {
            def: self.def.build(Protocol::TwoPhase)?,
        })
    }
}

/// A checked 2PC definition: build one with [`TwoPhase::builder`]. Cheap
/// to clone.
#[derive(Debug, Clone)]
pub struct TwoPhase {
    pub(crate) def: Definition,
}

impl TwoPhase {
    /// A 2PC definition named `name` (logged in its plan).
    pub fn builder(name: impl Into<String>) -> TwoPhaseBuilder {
        TwoPhaseBuilder {
            def: DefinitionBuilder::new(name.into()),
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

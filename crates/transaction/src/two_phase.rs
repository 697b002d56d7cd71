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

pub use crate::phased::{Branch, DefinitionError};

crate::phased::definition!(
    TwoPhase,
    TwoPhaseBuilder,
    Protocol::TwoPhase,
    "2PC",
    "Prepares"
);

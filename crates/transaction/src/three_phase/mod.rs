//! Three-phase commit: CanCommit, PreCommit, DoCommit.
//!
//! 1. **CanCommit.** Every branch is asked to vote (in parallel, or one
//!    after the other if [sequential](ThreePhaseBuilder::sequential)). A
//!    refusal, exhausted retries or the [global
//!    timeout](ThreePhaseBuilder::timeout) decide
//!    [`Abort`](crate::model::Decision::Abort).
//! 2. **PreCommit.** When every branch voted yes, each is sent
//!    [`Op::PreCommit`](crate::model::Op::PreCommit) (logged `Sent` first,
//!    like every call). A participant that acknowledged it knows that
//!    everyone voted yes. If a PreCommit is refused or cannot be
//!    delivered, the coordinator decides abort.
//! 3. **DoCommit.** When every branch acknowledged, the decision
//!    [`Commit`](crate::model::Decision::Commit) is logged, then every
//!    branch is sent [`Op::Commit`](crate::model::Op::Commit), retried until
//!    it succeeds (parked in
//!    [`NeedsIntervention`](crate::model::TxState::NeedsIntervention) past
//!    the limit). After an abort decision every branch that may have voted
//!    yes is sent [`Op::Rollback`](crate::model::Op::Rollback).
//!
//! What 3PC adds over [2PC](crate::two_phase) is that participants do not
//! block on a silent coordinator. A participant that voted yes and hears
//! nothing aborts on its own after a timeout. One that acknowledged a
//! PreCommit commits on its own. [`ThreePhaseParticipant`] implements that
//! state machine over your [`Resource`].
//!
//! Recovery follows the same rule from the log. A transaction with no
//! PreCommit logged is aborted (presumed abort; a CanCommit is never
//! re-sent). One that may have sent a PreCommit goes **forward**: the
//! PreCommits are re-sent and commit is decided when all are acknowledged.
//! Pre-committed participants would commit on their own anyway.
//!
//! # Why 3PC is unsafe under network partitions
//!
//! The participant timeouts that make 3PC non-blocking are also what
//! breaks it. Suppose a partition separates the pre-committed participants
//! from those still waiting for their PreCommit. Each side times out and
//! decides on its own: the pre-committed side commits and the waiting side
//! aborts. The transaction is then split. The same happens when a message
//! is delayed beyond a timeout (a PreCommit that arrives after its
//! participant already aborted, or a DoCommit that is late). 3PC is only
//! correct with bounded message delays and no partitions, which real
//! networks do not promise. When a split happens, it shows as a refused
//! call: a rollback refused by a participant that committed on its own, or
//! a PreCommit or DoCommit refused by one that aborted. The coordinator then
//! parks the transaction with the reason, for an operator.
//!
//! **Prefer 2PC** (with [`Coordinator::decision`] for participants in
//! doubt) whenever consistency matters more than a blocked participant.
//! 2PC never splits; at worst a participant waits, holding its locks,
//! until the coordinator (or recovery on another one) comes back. Use 3PC
//! only when a participant must not hold its resources through a
//! coordinator outage, when your network's delays are bounded well below
//! the participant timeouts, and when an occasional split that an operator
//! resolves is acceptable. Set the participant timeouts far above the
//! coordinator's worst-case delay between phases.
//!
//! [`Coordinator::decision`]: crate::coordinator::Coordinator::decision
//!
//! ```
//! use std::sync::Arc;
//! use rampart_transaction::coordinator::{Coordinator, CoordinatorConfig};
//! use rampart_transaction::model::TxState;
//! use rampart_transaction::participant::{BranchCall, participant};
//! use rampart_transaction::store::MemoryTxStore;
//! use rampart_transaction::three_phase::{Branch, ThreePhase};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = participant(tower::service_fn(|call: BranchCall| async move {
//!     Ok::<_, std::convert::Infallible>(json!({ "op": call.op.as_str() }))
//! }));
//! let coordinator = Coordinator::new(Arc::new(MemoryTxStore::new()), CoordinatorConfig::new())?
//!     .participant("orders-db", db.clone())
//!     .participant("ledger-db", db);
//! let tx = ThreePhase::builder("transfer")
//!     .branch(Branch::new("orders", "orders-db"))
//!     .branch(Branch::new("ledger", "ledger-db"))
//!     .build()?;
//! let outcome = coordinator.start_three_phase(&tx, json!({ "amount": 5 })).await?;
//! assert_eq!(outcome.state, TxState::Committed);
//! assert_eq!(outcome.outputs["ledger"], json!({ "op": "can_commit" }));
//! # Ok(()) }
//! ```

mod participant;

use crate::model::Protocol;

pub use crate::phased::{Branch, DefinitionError};
pub use participant::{Resource, TIMEOUTS_TOTAL, ThreePhaseParticipant, ThreePhaseState};

crate::phased::definition!(
    ThreePhase,
    ThreePhaseBuilder,
    Protocol::ThreePhase,
    "3PC",
    "Asks"
);

//! TCC (try-confirm-cancel): every branch's try runs (in parallel, or one
//! after the other if [sequential](TccBuilder::sequential)); when all
//! succeeded the decision [`Commit`](crate::model::Decision::Commit) is
//! logged ([`Committing`](crate::model::TxState::Committing)) and every
//! branch is confirmed; when a try is refused or given up,
//! [`Abort`](crate::model::Decision::Abort) is logged
//! ([`Aborting`](crate::model::TxState::Aborting)) and every branch whose
//! try ran or may have ran (logged sent, in doubt or succeeded) is
//! cancelled. Run one with
//! [`Coordinator::start_tcc`](crate::coordinator::Coordinator::start_tcc).
//!
//! Under failure:
//! - confirms and cancels are retried with the coordinator's backoff up to
//!   [`max_attempts`](crate::coordinator::CoordinatorConfig::max_attempts);
//!   one that is refused or still fails then parks the transaction in
//!   [`NeedsIntervention`](crate::model::TxState::NeedsIntervention)
//!   (its decision stays logged: [`resume`](crate::coordinator::Coordinator::resume)
//!   goes on with the same phase two);
//! - a coordinator that stops after logging the decision is replaced by
//!   recovery, which finishes phase two from the log;
//! - a coordinator that stops before logging the decision: recovery aborts
//!   the transaction (cancels every try that may have run). Tries are never
//!   re-sent by recovery, so a try cannot reach a participant after its
//!   cancel from this coordinator (a try still in flight on the network
//!   can: participants guard with the [barrier](crate::barrier)).
//!
//! Each confirm and cancel is sent `{"request": <the try's request>,
//! "output": <the try's answer or null>}`.
//!
//! ```
//! use std::sync::Arc;
//! use rampart_transaction::coordinator::{Coordinator, CoordinatorConfig};
//! use rampart_transaction::model::TxState;
//! use rampart_transaction::participant::{BranchCall, participant};
//! use rampart_transaction::store::MemoryTxStore;
//! use rampart_transaction::tcc::{Branch, Tcc};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ok = participant(tower::service_fn(|call: BranchCall| async move {
//!     Ok::<_, std::convert::Infallible>(json!({ "op": call.op.as_str() }))
//! }));
//! let coordinator = Coordinator::new(Arc::new(MemoryTxStore::new()), CoordinatorConfig::new())?
//!     .participant("inventory", ok.clone())
//!     .participant("payments", ok);
//! let tcc = Tcc::builder("order")
//!     .branch(Branch::new("stock", "inventory"))
//!     .branch(Branch::new("money", "payments").request_value(json!({ "amount": 10 })))
//!     .build()?;
//! let outcome = coordinator.start_tcc(&tcc, json!({ "sku": "a-1" })).await?;
//! assert_eq!(outcome.state, TxState::Committed);
//! assert_eq!(outcome.outputs["money"], json!({ "op": "try" }));
//! # Ok(()) }
//! ```

use crate::model::Protocol;

pub use crate::phased::{Branch, DefinitionError};

crate::phased::definition!(Tcc, TccBuilder, Protocol::Tcc, "TCC", "Tries");

//! Distributed transactions for Tower services: saga, TCC, 2PC and 3PC
//! coordinators embedded in the service, on a durable log.
//!
//! | Piece | Where |
//! |---|---|
//! | the log's model: ids, states, ops, records | [`model`] |
//! | the log interface; `SqlTxStore` on SQLite or PostgreSQL (group commit, leased recovery); an in-memory store for tests | [`store`] |
//! | participants, branch calls, typed outcomes; HTTP participants | [`participant`], [`http`] |
//! | the coordinator: logged branch calls, retries, leases, recovery, parking, admin, retention, metrics | [`coordinator`] |
//! | the admin HTTP router (JSON) and the decision route participants in doubt poll | [`admin`] |
//! | sagas: DAG of steps, pivot, compensation in reverse order, global timeout | [`saga`] |
//! | TCC: try all, log the decision, confirm all or cancel what was tried | [`tcc`] |
//! | 2PC: prepare all, log the decision, commit or roll back all; presumed abort | [`two_phase`] |
//! | 3PC: CanCommit, PreCommit, DoCommit; the participant-side state machine with its timeouts; why it is unsafe under partitions | [`three_phase`] |
//! | the participant barrier: SQLite and PostgreSQL (features `sqlite`, `postgres`, on by default), Redis (feature `redis`) | [`barrier`] |
//! | crash injection for your own participants and store (feature `testing`) | `testing` |
//!
//! Guide: `docs/transaction.md`.
//!
//! ```
//! use rampart_transaction::model::{BranchId, Op, TxId};
//! use rampart_transaction::participant::{Attempt, BranchError};
//!
//! let tx = TxId::new("order-42")?;
//! let step = BranchId::new("reserve-stock")?;
//! assert_eq!(Op::Compensate.as_str(), "compensate");
//! // a participant's refusal is terminal; a lost connection is in doubt
//! let refused = Attempt::judge(Err(BranchError::terminal("out of stock").into()));
//! assert!(matches!(refused, Attempt::Terminal(_)));
//! assert!(matches!(Attempt::judge(Err("connection reset".into())), Attempt::InDoubt(_)));
//! # let _ = (tx, step);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod admin;
pub mod barrier;
pub mod coordinator;
pub mod http;
mod json_http;
pub mod model;
pub mod participant;
mod phased;
pub mod saga;
pub mod store;
pub mod tcc;
#[cfg(feature = "testing")]
pub mod testing;
pub mod three_phase;
pub mod two_phase;

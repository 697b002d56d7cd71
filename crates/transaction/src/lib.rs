//! Distributed transactions for Tower services: saga, TCC, 2PC and 3PC
//! coordinators embedded in the service, on a durable log.
//!
//! Work in progress (issue 7): the [`model`] of the log, the [`store`]
//! interface every coordinator writes through (with an in-memory store for
//! tests, and `store::SqlTxStore` on SQLite or PostgreSQL, features
//! `sqlite` and `postgres`; see `docs/transaction.md`), and [`participant`]
//! calls and their typed outcomes.
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

pub mod model;
pub mod participant;
pub mod store;

//! The durable log: [`TxStore`], the one interface every coordinator
//! writes through, and [`MemoryTxStore`], an in-process implementation for
//! unit tests of engine logic (it survives no crash of the process; use
//! the SQL store in production).
//!
//! Every state change of a transaction is one [`TxStore::commit`]: the
//! transaction row (guarded by its version) and any branch records, written
//! atomically. A coordinator writes before it acts (a branch is logged
//! `Sent` before the call), so a coordinator that dies at any point leaves
//! a log from which another one can finish the work.
//!
//! Recovery work is leased: [`TxStore::claim`] hands a coordinator the
//! active transactions no live coordinator holds, so exactly one
//! coordinator drives each one, and a dead coordinator's work is taken over
//! when its lease runs out.

mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod sql;

pub use memory::MemoryTxStore;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{ConnectError, SqlStoreConfig, SqlTxStore, WriteStats};

use std::fmt;
use std::time::Duration;

use rampart_core::BoxError;
use serde::{Deserialize, Serialize};

use crate::model::{BranchRecord, Decision, Protocol, TxId, TxRecord, TxState};

pub use rampart_core::BoxFuture;

/// Changes to a transaction row, applied by [`TxStore::commit`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TxUpdate {
    /// The new state, if it changes.
    pub state: Option<TxState>,
    /// The decision, if one is made now (never changed once made).
    pub decision: Option<Decision>,
    /// The new reason, if it changes (`Some(None)` clears it).
    pub reason: Option<Option<String>>,
}

/// One atomic write: a transaction row update and branch records
/// (inserted, or replacing the record of the same `(branch, op)`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Write {
    /// The transaction row's changes (its version is bumped even when
    /// `None`, so a write of branches alone still fences other writers).
    pub tx: Option<TxUpdate>,
    /// Branch records to upsert.
    pub branches: Vec<BranchRecord>,
}

impl Write {
    /// Applies the write to `tx` as a store does (the decision is never
    /// changed once made), except for the version and timestamps.
    pub(crate) fn apply_to(self, tx: &mut TxRecord) {
        if let Some(update) = self.tx {
            if let Some(state) = update.state {
                tx.state = state;
            }
            if let Some(decision) = update.decision {
                tx.decision.get_or_insert(decision);
            }
            if let Some(reason) = update.reason {
                tx.reason = reason;
            }
        }
        for branch in self.branches {
            match tx
                .branches
                .iter_mut()
                .find(|b| b.branch == branch.branch && b.op == branch.op)
            {
                Some(old) => *old = branch,
                None => tx.branches.push(branch),
            }
        }
    }
}

/// Which transactions [`TxStore::list`] returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TxFilter {
    /// Only these states (all when empty).
    pub states: Vec<TxState>,
    /// Only this protocol.
    pub protocol: Option<Protocol>,
    /// Only those created at or before this time (ms since the epoch).
    pub created_before: Option<u64>,
    /// At most this many, oldest first (all when `None`).
    pub limit: Option<usize>,
}

/// A transaction without its branches, as [`TxStore::list`] returns it
/// (and the admin router lists it, as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxSummary {
    /// Its id.
    pub id: TxId,
    /// Its protocol.
    pub protocol: Protocol,
    /// Where it is.
    pub state: TxState,
    /// Why, if a reason was logged.
    pub reason: Option<String>,
    /// When it was created (ms since the epoch).
    pub created_at: u64,
    /// When it was last written.
    pub updated_at: u64,
}

/// What can go wrong with the log.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// [`TxStore::create`]: a transaction with this id exists.
    Exists(TxId),
    /// No transaction with this id.
    NotFound(TxId),
    /// The transaction was written by someone else since it was read (its
    /// version moved): reload it. Another coordinator holds it, or this
    /// one lost its lease.
    Conflict {
        /// The transaction.
        id: TxId,
        /// The version the write expected.
        expected: u64,
        /// The version found.
        found: u64,
    },
    /// A logged row does not decode (schema drift, corruption): the
    /// coordinator parks that transaction and goes on with the others.
    Corrupt {
        /// The transaction.
        id: TxId,
        /// What did not decode.
        reason: String,
    },
    /// The store cannot be reached or failed (a locked SQLite file,
    /// PostgreSQL down). Nothing was written; retry later.
    Unavailable(BoxError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exists(id) => write!(f, "transaction {id} exists"),
            Self::NotFound(id) => write!(f, "no transaction {id}"),
            Self::Conflict {
                id,
                expected,
                found,
            } => write!(
                f,
                "transaction {id} was written by another coordinator (expected version {expected}, found {found})"
            ),
            Self::Corrupt { id, reason } => {
                write!(f, "transaction {id} does not decode from the log: {reason}")
            }
            Self::Unavailable(e) => write!(f, "transaction log unavailable: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable(e) => Some(&**e),
            _ => None,
        }
    }
}

/// The durable log of transactions. See the [module docs](self).
///
/// Object safe: share one as `Arc<dyn TxStore>`.
pub trait TxStore: Send + Sync + fmt::Debug {
    /// Logs a new transaction (with its first branch records, if any) at
    /// version 1, leased to `owner` for `lease` so that recovery elsewhere
    /// leaves it to its creator. Fails with [`StoreError::Exists`] if the
    /// id is taken: nothing is written then.
    fn create<'a>(
        &'a self,
        tx: &'a TxRecord,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The transaction and every branch record, or `None`.
    fn load<'a>(&'a self, id: &'a TxId) -> BoxFuture<'a, Result<Option<TxRecord>, StoreError>>;

    /// Applies `write` atomically if the transaction is at
    /// `expected_version`, and returns the new version (one more). Fails
    /// with [`StoreError::Conflict`] otherwise, writing nothing.
    fn commit<'a>(
        &'a self,
        id: &'a TxId,
        expected_version: u64,
        write: Write,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Leases to `owner`, for `lease`, up to `limit` active transactions
    /// (state running, committing or aborting) whose lease is free or has
    /// run out, oldest first, and returns their ids. On PostgreSQL,
    /// coordinators claiming at once never get the same transaction.
    fn claim<'a>(
        &'a self,
        owner: &'a str,
        lease: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<TxId>, StoreError>>;

    /// Extends `owner`'s lease on `id` by `lease` from now. Returns
    /// `false` (and changes nothing) if `owner` no longer holds it.
    fn renew<'a>(
        &'a self,
        id: &'a TxId,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Gives up `owner`'s lease on `id` (a no-op if it does not hold it).
    fn release<'a>(&'a self, id: &'a TxId, owner: &'a str)
    -> BoxFuture<'a, Result<(), StoreError>>;

    /// Transactions matching `filter`, oldest first, without branches.
    fn list<'a>(
        &'a self,
        filter: &'a TxFilter,
    ) -> BoxFuture<'a, Result<Vec<TxSummary>, StoreError>>;

    /// Deletes the terminal transactions last written before `before` (ms
    /// since the epoch), with their branches, and returns how many.
    fn purge(&self, before: u64) -> BoxFuture<'_, Result<u64, StoreError>>;
}

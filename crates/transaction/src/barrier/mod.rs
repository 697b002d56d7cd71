//! The participant barrier: makes duplicate calls, empty compensations and
//! hanging actions harmless on the participant's side.
//!
//! A coordinator retries, and the network reorders, so a participant may
//! see, for one branch:
//!
//! - a **duplicate**: the same `(transaction, branch, op)` twice (a retry
//!   after a lost answer, or two coordinators racing);
//! - an **empty compensation**: the compensation (cancel, rollback) arrives
//!   although its action never did (the action timed out in transit and
//!   the coordinator gave up on it);
//! - a **hanging action**: the action arrives *after* its compensation (it
//!   was stuck in the network); running it would leave an effect nobody
//!   will ever undo.
//!
//! The barrier keys every call by `(transaction, branch, op)` and decides,
//! before the business logic runs, what to do with it ([`Verdict`]):
//!
//! | call | barrier state | verdict | answer |
//! |---|---|---|---|
//! | any op | first time | [`Verdict::Proceed`] | the business logic's own |
//! | any op | seen and finished | [`Verdict::Duplicate`] | the first call's stored answer, business skipped |
//! | undo op (`Op::is_undo`) | its action never arrived | [`Verdict::Empty`] | success (`null`), business skipped, the action's key marked "undone before it ran" |
//! | action / try / prepare | marked "undone before it ran" | [`Verdict::Hanging`] | a terminal [`BranchError`], business skipped |
//! | any op (Redis only) | seen, still running | [`Verdict::Busy`] | a retryable [`BranchError`] |
//!
//! An undo op's forward op is given by [`forward_op`]: compensate undoes
//! action, cancel undoes try, rollback undoes prepare.
//!
//! Two backends:
//!
//! - SQL ([`SqlBarrier`], features `sqlite` and `postgres`): the barrier
//!   rows are written in the participant's own sqlx transaction, the same
//!   one the business logic writes in, so the business effect and the
//!   barrier commit or roll back together. Exactly once, even across
//!   crashes. Use [`SqlBarrier::run`] from any handler, or
//!   [`BarrierLayer`] around a tower service.
//! - Redis ([`RedisBarrier`], feature `redis`): for participants without a
//!   SQL store. The decision is one atomic script; the business effect is
//!   not in the same transaction, so it is weaker (see its docs).
//!
//! # Errors
//!
//! | error | meaning | how a coordinator judges it |
//! |---|---|---|
//! | [`BranchError`] terminal | a hanging action was refused | terminal: not retried |
//! | [`BranchError`] retryable | (Redis) the same call is still running | retryable |
//! | [`BarrierError`] | the barrier's store failed or holds garbage; nothing was committed, or (commit failed) unknown | in doubt: retried, which the barrier makes safe |
//! | the business logic's error | the business failed; its effect and the barrier row were rolled back | as the business said |
//!
//! # Metrics
//!
//! `rampart_transaction_barrier_calls_total`, a counter labelled `outcome`:
//! `applied` (the business ran and its effect is kept), `failed` (the
//! business failed and was rolled back), `duplicate`, `empty`, `hanging`,
//! `busy`.

use std::fmt;

use rampart_core::BoxError;
use rampart_core::metrics::labels;
use serde_json::Value;

use crate::model::Op;
use crate::participant::{BranchCall, BranchError};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod layer;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use layer::{BarrierLayer, BarrierRequest, BarrierService, SharedTx};
#[cfg(feature = "redis")]
pub use redis::{RedisBarrier, RedisBarrierConfig};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{BarrierDb, SqlBarrier, SqlBarrierConfig};

/// The forward op an undo op undoes: compensate → action, cancel → try,
/// rollback → prepare; `None` for an op that undoes nothing.
pub fn forward_op(op: Op) -> Option<Op> {
    match op {
        Op::Compensate => Some(Op::Action),
        Op::Cancel => Some(Op::Try),
        Op::Rollback => Some(Op::Prepare),
        _ => None,
    }
}

/// What the barrier decided for one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// First time: run the business logic.
    Proceed,
    /// Seen and finished before: skip the business logic and answer as the
    /// first call did (`null` when no answer was stored).
    Duplicate(Value),
    /// An undo op whose action never arrived: skip, answer success
    /// (`null`); the action is now marked so that it is refused if it
    /// arrives later.
    Empty,
    /// An action arriving after its undo op: skip, answer a terminal
    /// [`BranchError`].
    Hanging,
    /// (Redis only) the same call is running right now: answer a
    /// retryable [`BranchError`].
    Busy,
}

impl Verdict {
    /// Its name, as the `outcome` label and in logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Proceed => "proceed",
            Self::Duplicate(_) => "duplicate",
            Self::Empty => "empty",
            Self::Hanging => "hanging",
            Self::Busy => "busy",
        }
    }

    /// The answer to give for a call that does not proceed; `None` for
    /// [`Verdict::Proceed`].
    pub fn answer(&self, call: &BranchCall) -> Option<Result<Value, BoxError>> {
        Some(match self {
            Self::Proceed => return None,
            Self::Duplicate(output) => Ok(output.clone()),
            Self::Empty => Ok(Value::Null),
            Self::Hanging => Err(BranchError::terminal(format!(
                "hanging {} of branch {} in transaction {}: it arrived after its {}",
                call.op,
                call.branch,
                call.tx,
                undo_name(call.op),
            ))
            .into()),
            Self::Busy => Err(BranchError::retryable(format!(
                "{} of branch {} in transaction {} is already running",
                call.op, call.branch, call.tx
            ))
            .into()),
        })
    }
}

fn undo_name(op: Op) -> &'static str {
    match op {
        Op::Action => "compensation",
        Op::Try => "cancel",
        Op::Prepare => "rollback",
        _ => "undo",
    }
}

/// Records a call's outcome: a `tracing` event and the calls counter.
fn observe(call: &BranchCall, outcome: &'static str) {
    tracing::debug!(
        tx = %call.tx,
        branch = %call.branch,
        op = %call.op,
        outcome,
        "participant barrier"
    );
    metrics::counter!(
        rampart_core::metric_name!("transaction", "barrier_calls_total"),
        labels::OUTCOME => outcome
    )
    .increment(1);
}

/// The answer for a verdict that does not proceed, observed.
fn skip(call: &BranchCall, verdict: &Verdict) -> Option<Result<Value, BoxError>> {
    let answer = verdict.answer(call)?;
    observe(call, verdict.as_str());
    Some(answer)
}

/// The barrier itself failed: its store could not be reached, or holds a
/// row it cannot read. Nothing the business did was kept, except where a
/// variant says otherwise.
#[derive(Debug)]
#[non_exhaustive]
pub enum BarrierError {
    /// The SQL database failed (begin, a barrier statement, or commit; a
    /// failed commit leaves it unknown whether the effect was kept, which
    /// a retry resolves through the barrier).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    Database(sqlx::Error),
    /// Redis failed.
    #[cfg(feature = "redis")]
    Redis(::redis::RedisError),
    /// A stored answer or marker does not decode.
    Corrupt {
        /// The call's key, `tx/branch/op`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The inner service of a [`BarrierLayer`] still holds its
    /// [`SharedTx`] after answering, so the transaction cannot be
    /// committed; it is rolled back when the last handle drops.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    TransactionHeld,
}

impl BarrierError {
    fn corrupt(call: &BranchCall, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            key: format!("{}/{}/{}", call.tx, call.branch, call.op),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Self::Database(e) => write!(f, "barrier database failed: {e}"),
            #[cfg(feature = "redis")]
            Self::Redis(e) => write!(f, "barrier redis failed: {e}"),
            Self::Corrupt { key, reason } => write!(f, "barrier record {key} is corrupt: {reason}"),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Self::TransactionHeld => f.write_str(
                "the inner service kept its transaction handle; the transaction was not committed",
            ),
        }
    }
}

impl std::error::Error for BarrierError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Self::Database(e) => Some(e),
            #[cfg(feature = "redis")]
            Self::Redis(e) => Some(e),
            _ => None,
        }
    }
}

/// Decodes a stored answer.
fn decode_output(call: &BranchCall, stored: Option<&str>) -> Result<Value, BarrierError> {
    match stored {
        None => Ok(Value::Null),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| BarrierError::corrupt(call, format!("stored answer is not JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BranchId, TxId};
    use crate::participant::Attempt;

    fn call(op: Op) -> BranchCall {
        BranchCall {
            tx: TxId::new("t1").unwrap(),
            branch: BranchId::new("b1").unwrap(),
            op,
            payload: Value::Null,
        }
    }

    #[test]
    fn undo_ops_map_to_their_forward_op() {
        assert_eq!(forward_op(Op::Compensate), Some(Op::Action));
        assert_eq!(forward_op(Op::Cancel), Some(Op::Try));
        assert_eq!(forward_op(Op::Rollback), Some(Op::Prepare));
        for op in [Op::Action, Op::Try, Op::Confirm, Op::Prepare, Op::Commit] {
            assert_eq!(forward_op(op), None);
        }
    }

    #[test]
    fn verdicts_answer_as_documented() {
        let c = call(Op::Action);
        assert!(Verdict::Proceed.answer(&c).is_none());
        assert_eq!(
            Verdict::Duplicate(Value::from(7))
                .answer(&c)
                .unwrap()
                .unwrap(),
            Value::from(7)
        );
        assert_eq!(Verdict::Empty.answer(&c).unwrap().unwrap(), Value::Null);
        let hanging = Attempt::judge(Verdict::Hanging.answer(&c).unwrap());
        assert!(matches!(hanging, Attempt::Terminal(m) if m.contains("after its compensation")));
        let busy = Attempt::judge(Verdict::Busy.answer(&c).unwrap());
        assert!(matches!(busy, Attempt::Retryable(_)));
    }

    #[test]
    fn a_stored_answer_that_is_not_json_is_corrupt() {
        let c = call(Op::Action);
        assert_eq!(decode_output(&c, None).unwrap(), Value::Null);
        assert_eq!(
            decode_output(&c, Some("[1]")).unwrap(),
            serde_json::json!([1])
        );
        let e = decode_output(&c, Some("{oops")).unwrap_err();
        assert!(e.to_string().contains("t1/b1/action"), "{e}");
    }
}

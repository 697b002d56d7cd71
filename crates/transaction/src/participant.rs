//! Participants: the services a coordinator calls for each branch, what
//! every call carries, and how an answer is judged.
//!
//! A participant is any `tower::Service<BranchCall, Response = Value>`
//! (boxed as [`Participant`]). Every call carries the transaction id, the
//! branch id and the operation: together, the idempotency key a
//! participant (or a participant-side barrier) uses to make a repeated
//! call harmless. Over HTTP they travel as the [`TX_ID_HEADER`],
//! [`BRANCH_ID_HEADER`] and [`OP_HEADER`] headers.
//!
//! Answers are judged into four typed outcomes ([`Attempt`]): a success
//! with its output; a retryable failure (no effect, try again later); a
//! terminal failure (a business refusal, no effect); or *in doubt* (a
//! timeout, a connection lost mid-call, an answer that does not decode):
//! the call may or may not have taken effect, so it is retried (safe
//! thanks to the idempotency key) or undone, never assumed either way. A
//! participant says which with a [`BranchError`]; any other error is in
//! doubt.

use std::fmt;

use rampart_core::BoxError;
use serde_json::Value;
use tower::util::BoxCloneSyncService;

use crate::model::{BranchId, Op, TxId};

/// The header carrying the transaction id.
pub const TX_ID_HEADER: &str = "x-rampart-tx-id";
/// The header carrying the branch id.
pub const BRANCH_ID_HEADER: &str = "x-rampart-branch-id";
/// The header carrying the operation ([`Op::as_str`]).
pub const OP_HEADER: &str = "x-rampart-op";

/// One branch call, as a participant receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct BranchCall {
    /// The transaction.
    pub tx: TxId,
    /// The branch (step) within it.
    pub branch: BranchId,
    /// What is asked.
    pub op: Op,
    /// The request body (logged before the first attempt).
    pub payload: Value,
}

/// A participant service, boxed: cheap to clone, `Send + Sync`.
pub type Participant = BoxCloneSyncService<BranchCall, Value, BoxError>;

/// Boxes `service` as a [`Participant`].
pub fn participant<S>(service: S) -> Participant
where
    S: tower::Service<BranchCall, Response = Value> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    use tower::ServiceExt;
    BoxCloneSyncService::new(service.map_err(Into::into))
}

/// How a participant's failure is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// It had no effect and may succeed if tried again (overloaded,
    /// a dependency down).
    Retryable,
    /// It had no effect and never will (a business refusal: out of stock,
    /// insufficient funds).
    Terminal,
    /// Unknown whether it had an effect.
    InDoubt,
}

/// A typed failure a participant returns (or an adapter builds from an
/// HTTP status) to say what the failure means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchError {
    kind: FailureKind,
    message: String,
}

impl BranchError {
    /// A failure of `kind`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// No effect; try again later.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Retryable, message)
    }

    /// No effect, ever: a business refusal.
    pub fn terminal(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Terminal, message)
    }

    /// May or may not have had an effect.
    pub fn in_doubt(message: impl Into<String>) -> Self {
        Self::new(FailureKind::InDoubt, message)
    }

    /// What it means.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The participant's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for BranchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FailureKind::Retryable => "retryable",
            FailureKind::Terminal => "terminal",
            FailureKind::InDoubt => "in doubt",
        };
        write!(f, "{kind} branch failure: {}", self.message)
    }
}

impl std::error::Error for BranchError {}

/// The outcome of one attempt of a branch call.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Applied; the participant's answer.
    Success(Value),
    /// Not applied; may be tried again.
    Retryable(String),
    /// Not applied, for good.
    Terminal(String),
    /// Unknown whether applied.
    InDoubt(String),
}

impl Attempt {
    /// Judges a participant's answer: `Ok` is a success; a
    /// [`BranchError`] (found anywhere in the error's source chain) says
    /// its kind; anything else (a timeout, a lost connection, a garbled
    /// answer) is in doubt.
    pub fn judge(result: Result<Value, BoxError>) -> Self {
        let error = match result {
            Ok(output) => return Self::Success(output),
            Err(e) => e,
        };
        let message = error.to_string();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
        while let Some(e) = source {
            if let Some(branch) = e.downcast_ref::<BranchError>() {
                return match branch.kind {
                    FailureKind::Retryable => Self::Retryable(message),
                    FailureKind::Terminal => Self::Terminal(message),
                    FailureKind::InDoubt => Self::InDoubt(message),
                };
            }
            source = e.source();
        }
        Self::InDoubt(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(BranchError);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "wrapped: {}", self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn answers_are_judged_by_their_typed_kind_else_in_doubt() {
        assert_eq!(
            Attempt::judge(Ok(Value::from(1))),
            Attempt::Success(Value::from(1))
        );
        assert!(matches!(
            Attempt::judge(Err(BranchError::terminal("out of stock").into())),
            Attempt::Terminal(m) if m.contains("out of stock")
        ));
        assert!(matches!(
            Attempt::judge(Err(BranchError::retryable("busy").into())),
            Attempt::Retryable(_)
        ));
        assert!(matches!(
            Attempt::judge(Err(Box::new(Wrapped(BranchError::terminal("no"))))),
            Attempt::Terminal(_)
        ));
        assert!(matches!(
            Attempt::judge(Err("connection reset".into())),
            Attempt::InDoubt(_)
        ));
    }
}

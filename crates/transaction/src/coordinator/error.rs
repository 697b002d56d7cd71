//! [`TxError`]: what a coordinator call can fail with.

use std::fmt;

use rampart_core::ConfigError;

use crate::model::{TxId, TxState};
use crate::saga::SagaError;
use crate::store::StoreError;

/// Why a coordinator call failed.
///
/// | Variant | Meaning | Was anything called? |
/// |---|---|---|
/// | [`Store`](Self::Store) | the log refused or could not take the write that starts or admins a transaction | no |
/// | [`UnknownParticipant`](Self::UnknownParticipant) | a step names a participant the coordinator does not have | no |
/// | [`Saga`](Self::Saga) | the saga definition is invalid | no |
/// | [`Config`](Self::Config) | the configuration is invalid | no |
/// | [`NotFound`](Self::NotFound) | no such transaction | no |
/// | [`InvalidState`](Self::InvalidState) | the admin action does not apply in this state | no |
/// | [`Interrupted`](Self::Interrupted) | the run stopped midway: the store stayed unreachable longer than the lease, or another coordinator took the transaction over | maybe: the log says what; recovery finishes it |
#[derive(Debug)]
#[non_exhaustive]
pub enum TxError {
    /// The log refused or failed a write that had to succeed first.
    Store(StoreError),
    /// A step names a participant that was never registered.
    UnknownParticipant {
        /// The step.
        step: String,
        /// The participant's name.
        participant: String,
    },
    /// The saga definition is invalid.
    Saga(SagaError),
    /// The configuration is invalid.
    Config(ConfigError),
    /// No transaction with this id.
    NotFound(TxId),
    /// The admin action does not apply to a transaction in this state.
    InvalidState {
        /// The transaction.
        id: TxId,
        /// Where it is.
        state: TxState,
        /// What was asked.
        action: &'static str,
    },
    /// The run stopped before a terminal state; the transaction stays in
    /// the log and recovery drives it on.
    Interrupted {
        /// The transaction.
        id: TxId,
        /// Why the run stopped.
        reason: String,
    },
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(e) => write!(f, "transaction log: {e}"),
            Self::UnknownParticipant { step, participant } => {
                write!(f, "step {step:?} names unknown participant {participant:?}")
            }
            Self::Saga(e) => write!(f, "invalid saga: {e}"),
            Self::Config(e) => write!(f, "{e}"),
            Self::NotFound(id) => write!(f, "no transaction {id}"),
            Self::InvalidState { id, state, action } => write!(
                f,
                "cannot {action} transaction {id}: it is {}",
                state.as_str()
            ),
            Self::Interrupted { id, reason } => {
                write!(
                    f,
                    "transaction {id} interrupted (recovery resumes it): {reason}"
                )
            }
        }
    }
}

impl std::error::Error for TxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Store(e) => Some(e),
            Self::Saga(e) => Some(e),
            Self::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<SagaError> for TxError {
    fn from(e: SagaError) -> Self {
        Self::Saga(e)
    }
}

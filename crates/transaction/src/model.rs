//! What the durable log holds: transactions, their branches, and the ids
//! every branch call carries.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rampart_core::random::{fresh_seed, splitmix64};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A transaction's id: unique in its store, chosen by the caller (to make a
/// start idempotent) or generated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TxId(String);

impl TxId {
    /// `id` as a transaction id. Refused: empty, longer than 128 bytes, or
    /// with characters outside `A-Z a-z 0-9 - _ . :` (it travels in HTTP
    /// headers and SQL keys).
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidId> {
        let id = id.into();
        check_id(&id)?;
        Ok(Self(id))
    }

    /// A fresh random id: 32 hex digits (128 bits).
    pub fn generate() -> Self {
        let (a, b) = (fresh_seed(), splitmix64(fresh_seed()));
        Self(format!("{a:016x}{b:016x}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A branch's id within its transaction: the step's name (`"reserve-stock"`).
/// Same rules as [`TxId`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BranchId(String);

impl BranchId {
    /// `id` as a branch id; see [`TxId::new`] for the rules.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidId> {
        let id = id.into();
        check_id(&id)?;
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// So that maps keyed by branch id (a saga's outputs) can be read with a
/// plain `&str`: `outputs["reserve"]`.
impl std::borrow::Borrow<str> for BranchId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BranchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An id that is empty, too long, or has a character it may not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId {
    id: String,
    reason: &'static str,
}

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid id {:?}: {}", self.id, self.reason)
    }
}

impl std::error::Error for InvalidId {}

fn check_id(id: &str) -> Result<(), InvalidId> {
    let reason = if id.is_empty() {
        "empty"
    } else if id.len() > 128 {
        "longer than 128 bytes"
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        "only A-Z, a-z, 0-9, '-', '_', '.' and ':' are allowed"
    } else {
        return Ok(());
    };
    Err(InvalidId {
        id: id.chars().take(140).collect(),
        reason,
    })
}

/// The protocol a transaction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Actions forward, compensations backward on failure.
    Saga,
    /// Try all, then confirm all or cancel all.
    Tcc,
    /// Prepare all, decide, then commit or roll back all.
    TwoPhase,
    /// CanCommit, PreCommit, DoCommit.
    ThreePhase,
}

impl Protocol {
    /// The name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Saga => "saga",
            Self::Tcc => "tcc",
            Self::TwoPhase => "two_phase",
            Self::ThreePhase => "three_phase",
        }
    }
}

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxState {
    /// Going forward: actions, tries, prepares.
    Running,
    /// Decided to commit; confirming or committing the branches.
    Committing,
    /// Undoing: compensating, cancelling or rolling back the branches.
    Aborting,
    /// Done, every branch applied. Terminal.
    Committed,
    /// Done, every branch undone (or never applied). Terminal.
    Aborted,
    /// Stopped, waiting for an operator: retries ran out, or the log could
    /// not be read. The reason is in [`TxRecord::reason`].
    NeedsIntervention,
    /// An operator marked it resolved after an intervention. Terminal.
    Resolved,
}

impl TxState {
    /// No coordinator will drive it further.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Committed | Self::Aborted | Self::Resolved)
    }

    /// Recovery drives it (not terminal, not parked).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Committing | Self::Aborting)
    }

    /// The name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Committing => "committing",
            Self::Aborting => "aborting",
            Self::Committed => "committed",
            Self::Aborted => "aborted",
            Self::NeedsIntervention => "needs_intervention",
            Self::Resolved => "resolved",
        }
    }

    /// The state named `s` in the log.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Self::Running,
            "committing" => Self::Committing,
            "aborting" => Self::Aborting,
            "committed" => Self::Committed,
            "aborted" => Self::Aborted,
            "needs_intervention" => Self::NeedsIntervention,
            "resolved" => Self::Resolved,
            _ => return None,
        })
    }
}

/// What a branch call asks the participant to do. Travels as the
/// `x-rampart-op` header (HTTP) and is part of the idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// A saga step's action.
    Action,
    /// A saga step's compensation.
    Compensate,
    /// TCC try.
    Try,
    /// TCC confirm.
    Confirm,
    /// TCC cancel.
    Cancel,
    /// 2PC prepare.
    Prepare,
    /// 2PC/3PC commit (3PC: DoCommit).
    Commit,
    /// 2PC/3PC rollback (abort).
    Rollback,
    /// 3PC CanCommit.
    CanCommit,
    /// 3PC PreCommit.
    PreCommit,
}

impl Op {
    /// The name on the wire and in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Action => "action",
            Self::Compensate => "compensate",
            Self::Try => "try",
            Self::Confirm => "confirm",
            Self::Cancel => "cancel",
            Self::Prepare => "prepare",
            Self::Commit => "commit",
            Self::Rollback => "rollback",
            Self::CanCommit => "can_commit",
            Self::PreCommit => "pre_commit",
        }
    }

    /// The op named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "action" => Self::Action,
            "compensate" => Self::Compensate,
            "try" => Self::Try,
            "confirm" => Self::Confirm,
            "cancel" => Self::Cancel,
            "prepare" => Self::Prepare,
            "commit" => Self::Commit,
            "rollback" => Self::Rollback,
            "can_commit" => Self::CanCommit,
            "pre_commit" => Self::PreCommit,
            _ => return None,
        })
    }

    /// Whether this op undoes another (compensate, cancel, rollback): the
    /// ops a barrier guards against arriving before their action.
    pub fn is_undo(self) -> bool {
        matches!(self, Self::Compensate | Self::Cancel | Self::Rollback)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one branch call is, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BranchState {
    /// Logged as about to be sent: after a crash it may or may not have
    /// reached the participant, so recovery treats it as in doubt.
    Sent,
    /// The participant applied it; [`BranchRecord::output`] holds its
    /// answer.
    Succeeded,
    /// The participant refused it for good (a business rejection); it had
    /// no effect.
    Failed,
    /// Unknown whether it had an effect (timeout, connection lost, a
    /// garbled answer): it must be retried (idempotency makes that safe)
    /// or undone, never assumed either way.
    InDoubt,
}

impl BranchState {
    /// The name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::InDoubt => "in_doubt",
        }
    }

    /// The state named `s` in the log.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sent" => Self::Sent,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "in_doubt" => Self::InDoubt,
            _ => return None,
        })
    }

    /// The call may have had an effect.
    pub fn may_have_applied(self) -> bool {
        !matches!(self, Self::Failed)
    }
}

/// A commit-or-abort decision, logged before phase two (2PC, 3PC, TCC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Every branch is to be committed (confirmed).
    Commit,
    /// Every branch is to be rolled back (cancelled).
    Abort,
}

/// One branch call of a transaction, as logged: the latest state of the
/// `(branch, op)` pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchRecord {
    /// The step.
    pub branch: BranchId,
    /// What was asked of it.
    pub op: Op,
    /// Where the call is.
    pub state: BranchState,
    /// The request sent (built once and logged before the first attempt,
    /// so recovery re-sends it without running user code).
    pub request: Value,
    /// The participant's answer, once [`BranchState::Succeeded`].
    pub output: Option<Value>,
    /// The last error, if an attempt failed.
    pub error: Option<String>,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it was last written (milliseconds since the Unix epoch).
    pub updated_at: u64,
}

/// A transaction as logged, with every branch call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxRecord {
    /// Its id.
    pub id: TxId,
    /// Its protocol.
    pub protocol: Protocol,
    /// Where it is.
    pub state: TxState,
    /// The commit-or-abort decision, once made.
    pub decision: Option<Decision>,
    /// The transaction's input.
    pub input: Value,
    /// The protocol's plan (steps, order, pivot, timeouts), as its engine
    /// wrote it: everything recovery needs besides the participants.
    pub plan: Value,
    /// Why it is where it is (the error that aborted it, or why it needs
    /// an intervention).
    pub reason: Option<String>,
    /// When it was created (milliseconds since the Unix epoch).
    pub created_at: u64,
    /// When it was last written.
    pub updated_at: u64,
    /// When it must be finished by, if it has a global timeout.
    pub deadline: Option<u64>,
    /// Bumped by every write to the transaction row: a write names the
    /// version it read, so two coordinators cannot both advance it.
    pub version: u64,
    /// Every branch call, in the order first logged.
    pub branches: Vec<BranchRecord>,
}

impl TxRecord {
    /// The latest record of `(branch, op)`.
    pub fn branch(&self, branch: &BranchId, op: Op) -> Option<&BranchRecord> {
        self.branches
            .iter()
            .find(|b| &b.branch == branch && b.op == op)
    }

    /// The request of the call `op` that follows `first` on `branch` (a
    /// compensation, a confirm, a PreCommit...): the one logged, or else
    /// `{"request": <first's request>, "output": <first's answer>}`, each
    /// `null` when missing.
    pub(crate) fn follow_up_request(&self, branch: &BranchId, op: Op, first: Op) -> Value {
        if let Some(logged) = self.branch(branch, op) {
            return logged.request.clone();
        }
        let first = self.branch(branch, first);
        serde_json::json!({
            "request": first.map_or(Value::Null, |a| a.request.clone()),
            "output": first.and_then(|a| a.output.clone()).unwrap_or(Value::Null),
        })
    }
}

/// The answers of the succeeded calls in `records` whose op passes
/// `forward`, by branch.
pub(crate) fn outputs<'a>(
    records: impl IntoIterator<Item = &'a BranchRecord>,
    forward: impl Fn(Op) -> bool,
) -> BTreeMap<BranchId, Value> {
    records
        .into_iter()
        .filter(|b| forward(b.op) && b.state == BranchState::Succeeded)
        .filter_map(|b| Some((b.branch.clone(), b.output.clone()?)))
        .collect()
}

/// Milliseconds since the Unix epoch, now (the log's clock: wall time, so
/// that it means the same to every coordinator sharing a store).
pub fn now_ms() -> u64 {
    millis(SystemTime::now())
}

/// `t` as milliseconds since the Unix epoch (0 before it).
pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `d` in milliseconds, saturating.
pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(TxId::new("order-42:retry.1_a").is_ok());
        assert!(TxId::new("").is_err());
        assert!(TxId::new("a b").is_err());
        assert!(TxId::new("x".repeat(129)).is_err());
        assert!(BranchId::new("reserve\nstock").is_err());
        let a = TxId::generate();
        assert_eq!(a.as_str().len(), 32);
        assert_ne!(a, TxId::generate());
    }

    #[test]
    fn names_round_trip() {
        for s in [
            TxState::Running,
            TxState::Committing,
            TxState::Aborting,
            TxState::Committed,
            TxState::Aborted,
            TxState::NeedsIntervention,
            TxState::Resolved,
        ] {
            assert_eq!(TxState::parse(s.as_str()), Some(s));
        }
        for op in [
            Op::Action,
            Op::Compensate,
            Op::Try,
            Op::Confirm,
            Op::Cancel,
            Op::Prepare,
            Op::Commit,
            Op::Rollback,
            Op::CanCommit,
            Op::PreCommit,
        ] {
            assert_eq!(Op::parse(op.as_str()), Some(op));
        }
        for s in [
            BranchState::Sent,
            BranchState::Succeeded,
            BranchState::Failed,
            BranchState::InDoubt,
        ] {
            assert_eq!(BranchState::parse(s.as_str()), Some(s));
        }
    }
}

//! One group-commit batch as a handful of multi-row statements: the new
//! transaction rows in one `INSERT`, the version-fenced updates in one
//! `UPDATE ... FROM`, the branch records in one upsert, whatever the
//! number of writes (each statement is a round trip to the database; on
//! SQLite a hand-off to its connection's thread). The SQL is the same on
//! both engines.
//!
//! Rows are serialized by the caller ([`NewTx::new`], [`Change::new`]), on
//! its own task, so the writer only binds them. Placeholders are
//! positional on SQLite (`?`: a named one costs SQLite a search of every
//! name at each use, quadratic in a statement of many rows) and numbered
//! on PostgreSQL; either way they are bound in the order written.

use std::collections::HashSet;

use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::config::Dialect;
use super::{decision_str, int};
use crate::model::{BranchRecord, TxId, TxRecord};
use crate::store::{StoreError, Write};

/// The most rows one statement carries (their parameters stay far below
/// either engine's limit).
const MAX_ROWS: usize = 200;

/// Statements of at most this many rows stay in the connection's
/// prepared-statement cache; longer ones (rarer shapes) are prepared once.
const CACHED_ROWS: usize = 8;

// === the rows ===

/// A transaction to insert, with its first branch records.
pub(super) struct NewTx {
    pub(super) id: TxId,
    protocol: &'static str,
    state: &'static str,
    decision: Option<&'static str>,
    input: String,
    plan: String,
    reason: Option<String>,
    created_at: i64,
    updated_at: i64,
    deadline: Option<i64>,
    owner: String,
    lease_until: i64,
    branches: Vec<BranchRow>,
}

impl NewTx {
    pub(super) fn new(tx: &TxRecord, owner: &str, lease_until: u64) -> Self {
        Self {
            id: tx.id.clone(),
            protocol: tx.protocol.as_str(),
            state: tx.state.as_str(),
            decision: tx.decision.map(decision_str),
            input: tx.input.to_string(),
            plan: tx.plan.to_string(),
            reason: tx.reason.clone(),
            created_at: int(tx.created_at),
            updated_at: int(tx.updated_at),
            deadline: tx.deadline.map(int),
            owner: owner.to_owned(),
            lease_until: int(lease_until),
            branches: branch_rows(tx.branches.iter().cloned()),
        }
    }
}

/// A version-fenced write to a transaction.
pub(super) struct Change {
    pub(super) id: TxId,
    pub(super) expected: u64,
    state: Option<&'static str>,
    decision: Option<&'static str>,
    /// `Some` replaces the reason (`Some(None)` clears it).
    reason: Option<Option<String>>,
    branches: Vec<BranchRow>,
}

impl Change {
    pub(super) fn new(id: &TxId, expected: u64, write: Write) -> Self {
        let update = write.tx.unwrap_or_default();
        Self {
            id: id.clone(),
            expected,
            state: update.state.map(|s| s.as_str()),
            decision: update.decision.map(decision_str),
            reason: update.reason,
            branches: branch_rows(write.branches),
        }
    }
}

/// A branch record to upsert.
struct BranchRow {
    branch: String,
    op: &'static str,
    state: &'static str,
    request: String,
    output: Option<String>,
    error: Option<String>,
    attempts: i64,
    updated_at: i64,
}

/// The rows of `branches`, one per `(branch, op)`: a later record of a
/// pair replaces an earlier one in its place, as the log applies them.
fn branch_rows(branches: impl IntoIterator<Item = BranchRecord>) -> Vec<BranchRow> {
    let mut rows: Vec<BranchRow> = Vec::new();
    for b in branches {
        let row = BranchRow {
            op: b.op.as_str(),
            state: b.state.as_str(),
            request: b.request.to_string(),
            output: b.output.as_ref().map(ToString::to_string),
            error: b.error,
            attempts: i64::from(b.attempts),
            updated_at: int(b.updated_at),
            branch: b.branch.as_str().to_owned(),
        };
        match rows
            .iter_mut()
            .find(|r| r.branch == row.branch && r.op == row.op)
        {
            Some(old) => *old = row,
            None => rows.push(row),
        }
    }
    rows
}

/// A write of a batch.
pub(super) enum Op {
    Create(NewTx),
    Commit(Change),
}

impl Op {
    fn id(&self) -> &TxId {
        match self {
            Self::Create(tx) => &tx.id,
            Self::Commit(change) => &change.id,
        }
    }
}

// === the statements ===

/// Applies `ops` (in an open database transaction on `conn`, at time
/// `now`) and returns each one's result: `Exists`, `NotFound` or
/// `Conflict` fail that write alone. A statement the database refuses
/// fails the whole call.
pub(super) async fn apply(
    conn: &mut AnyConnection,
    dialect: Dialect,
    ops: &[&Op],
    now: i64,
) -> Result<Vec<Result<u64, StoreError>>, sqlx::Error> {
    let mut results: Vec<Option<Result<u64, StoreError>>> = ops.iter().map(|_| None).collect();
    for round in rounds(ops) {
        let creates: Vec<(usize, &NewTx)> = round
            .iter()
            .filter_map(|&i| match ops[i] {
                Op::Create(tx) => Some((i, tx)),
                Op::Commit(_) => None,
            })
            .collect();
        let changes: Vec<(usize, &Change)> = round
            .iter()
            .filter_map(|&i| match ops[i] {
                Op::Commit(change) => Some((i, change)),
                Op::Create(_) => None,
            })
            .collect();
        let inserted = insert_txs(conn, dialect, &creates).await?;
        let updated = update_txs(conn, dialect, &changes, now).await?;
        let mut branches: Vec<(&TxId, u64, &[BranchRow])> = Vec::new();
        for &(i, tx) in &creates {
            results[i] = Some(if inserted.contains(tx.id.as_str()) {
                branches.push((&tx.id, 1, &tx.branches));
                Ok(1)
            } else {
                Err(StoreError::Exists(tx.id.clone()))
            });
        }
        let mut missed = Vec::new();
        for &(i, change) in &changes {
            if updated.contains(change.id.as_str()) {
                branches.push((&change.id, change.expected + 1, &change.branches));
                results[i] = Some(Ok(change.expected + 1));
            } else {
                missed.push((i, change));
            }
        }
        for (i, error) in why_missed(conn, dialect, &missed).await? {
            results[i] = Some(Err(error));
        }
        upsert_branches(conn, dialect, &branches).await?;
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(super::writer::lost())))
        .collect())
}

/// `ops`' indices in rounds that name each transaction at most once (in
/// queue order: two writes to one transaction land in successive rounds,
/// and each round's rows can go in one statement).
fn rounds(ops: &[&Op]) -> Vec<Vec<usize>> {
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut ids: HashSet<&str> = HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        let id = op.id().as_str();
        if rounds.is_empty() || !ids.insert(id) {
            rounds.push(Vec::new());
            ids.clear();
            ids.insert(id);
        }
        if let Some(round) = rounds.last_mut() {
            round.push(i);
        }
    }
    rounds
}

/// SQL text whose placeholders, written `?`, are numbered in the order
/// written for PostgreSQL (`$1`, `$2`, ...) and kept positional for SQLite.
struct Sql {
    dialect: Dialect,
    text: String,
    params: usize,
}

impl Sql {
    fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            text: String::with_capacity(512),
            params: 0,
        }
    }

    /// Appends `part`.
    fn push(mut self, part: &str) -> Self {
        for c in part.chars() {
            match (c, self.dialect) {
                ('?', Dialect::Postgres) => {
                    self.params += 1;
                    self.text.push('$');
                    self.text.push_str(&self.params.to_string());
                }
                _ => self.text.push(c),
            }
        }
        self
    }

    /// Appends `count` copies of `row`, comma-separated.
    fn rows(mut self, count: usize, row: &str) -> Self {
        for r in 0..count {
            if r > 0 {
                self = self.push(", ");
            }
            self = self.push(row);
        }
        self
    }

    /// A query of this text; prepared once and cached on the connection
    /// if it is short (a common shape).
    fn query<'q>(self, rows: usize) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        sqlx::query(AssertSqlSafe(self.text)).persistent(rows <= CACHED_ROWS)
    }
}

/// Inserts `creates` (at version 1, leased); the ids actually inserted
/// (the others exist).
async fn insert_txs(
    conn: &mut AnyConnection,
    dialect: Dialect,
    creates: &[(usize, &NewTx)],
) -> Result<HashSet<String>, sqlx::Error> {
    let mut inserted = HashSet::new();
    for chunk in creates.chunks(MAX_ROWS) {
        let mut query = Sql::new(dialect)
            .push(
                "INSERT INTO rampart_tx (id, protocol, state, decision, input, plan, reason, \
                 created_at, updated_at, deadline, version, lease_owner, lease_until) VALUES ",
            )
            .rows(chunk.len(), "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)")
            .push(" ON CONFLICT (id) DO NOTHING RETURNING id")
            .query(chunk.len());
        for (_, tx) in chunk {
            query = query
                .bind(tx.id.as_str())
                .bind(tx.protocol)
                .bind(tx.state)
                .bind(tx.decision)
                .bind(tx.input.as_str())
                .bind(tx.plan.as_str())
                .bind(tx.reason.as_deref())
                .bind(tx.created_at)
                .bind(tx.updated_at)
                .bind(tx.deadline)
                .bind(tx.owner.as_str())
                .bind(tx.lease_until);
        }
        for row in query.fetch_all(&mut *conn).await? {
            inserted.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(inserted)
}

/// Applies `changes` to the transactions still at their expected version
/// (bumping it); the ids updated.
async fn update_txs(
    conn: &mut AnyConnection,
    dialect: Dialect,
    changes: &[(usize, &Change)],
    now: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    let mut updated = HashSet::new();
    for chunk in changes.chunks(MAX_ROWS) {
        let mut query = Sql::new(dialect)
            .push("WITH w (id, expected, state, decision, has_reason, reason) AS (VALUES ")
            .rows(chunk.len(), "(?, ?, ?, ?, ?, ?)")
            .push(
                ") UPDATE rampart_tx SET state = COALESCE(w.state, rampart_tx.state), \
                 decision = COALESCE(rampart_tx.decision, w.decision), \
                 reason = CASE WHEN w.has_reason THEN w.reason ELSE rampart_tx.reason END, \
                 updated_at = ?, version = rampart_tx.version + 1 \
                 FROM w WHERE rampart_tx.id = w.id AND rampart_tx.version = w.expected \
                 RETURNING rampart_tx.id",
            )
            .query(chunk.len());
        for (_, change) in chunk {
            query = query
                .bind(change.id.as_str())
                .bind(int(change.expected))
                .bind(change.state)
                .bind(change.decision)
                .bind(change.reason.is_some())
                .bind(change.reason.as_ref().and_then(|r| r.as_deref()));
        }
        query = query.bind(now);
        for row in query.fetch_all(&mut *conn).await? {
            updated.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(updated)
}

/// Why each of `missed` updated nothing: no such transaction, or another
/// version.
async fn why_missed(
    conn: &mut AnyConnection,
    dialect: Dialect,
    missed: &[(usize, &Change)],
) -> Result<Vec<(usize, StoreError)>, sqlx::Error> {
    let mut errors = Vec::with_capacity(missed.len());
    for chunk in missed.chunks(MAX_ROWS) {
        let mut query = Sql::new(dialect)
            .push("SELECT id, version FROM rampart_tx WHERE id IN (")
            .rows(chunk.len(), "?")
            .push(")")
            .query(chunk.len());
        for (_, change) in chunk {
            query = query.bind(change.id.as_str());
        }
        let mut found = std::collections::HashMap::new();
        for row in query.fetch_all(&mut *conn).await? {
            let version: i64 = row.try_get(1)?;
            found.insert(row.try_get::<String, _>(0)?, version);
        }
        for &(i, change) in chunk {
            let id = change.id.clone();
            errors.push((
                i,
                match found.get(change.id.as_str()) {
                    None => StoreError::NotFound(id),
                    Some(&version) => StoreError::Conflict {
                        id,
                        expected: change.expected,
                        found: u64::try_from(version).unwrap_or(0),
                    },
                },
            ));
        }
    }
    Ok(errors)
}

/// Where a record first logged as the `k`th of the write that made its
/// transaction's version `version` sorts: after every record of earlier
/// writes (and after the 1, 2, 3, ... of records logged before this
/// scheme), before those of later ones.
fn seq(version: u64, k: usize) -> i64 {
    int(version.saturating_mul(1 << 20).saturating_add(k as u64))
}

/// Inserts each transaction's branch records (from writes that made it
/// the given version), or replaces the record of the same `(branch, op)`,
/// keeping the order in which each pair was first logged ([`seq`]).
async fn upsert_branches(
    conn: &mut AnyConnection,
    dialect: Dialect,
    writes: &[(&TxId, u64, &[BranchRow])],
) -> Result<(), sqlx::Error> {
    let rows: Vec<(&TxId, i64, &BranchRow)> = writes
        .iter()
        .flat_map(|&(id, version, rows)| {
            rows.iter()
                .enumerate()
                .map(move |(k, r)| (id, seq(version, k), r))
        })
        .collect();
    for chunk in rows.chunks(MAX_ROWS) {
        let mut query = Sql::new(dialect)
            .push(
                "INSERT INTO rampart_tx_branch (tx_id, branch, op, seq, state, request, \
                 output, error, attempts, updated_at) VALUES ",
            )
            .rows(chunk.len(), "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .push(
                " ON CONFLICT (tx_id, branch, op) DO UPDATE SET state = excluded.state, \
                 request = excluded.request, output = excluded.output, \
                 error = excluded.error, attempts = excluded.attempts, \
                 updated_at = excluded.updated_at",
            )
            .query(chunk.len());
        for (id, seq, row) in chunk {
            query = query
                .bind(id.as_str())
                .bind(row.branch.as_str())
                .bind(row.op)
                .bind(*seq)
                .bind(row.state)
                .bind(row.request.as_str())
                .bind(row.output.as_deref())
                .bind(row.error.as_deref())
                .bind(row.attempts)
                .bind(row.updated_at);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BranchId, BranchState, Op as BranchOp};

    fn change(id: &str) -> Op {
        Op::Commit(Change::new(&TxId::new(id).unwrap(), 1, Write::default()))
    }

    #[test]
    fn rounds_name_each_transaction_once_in_queue_order() {
        let ops = [
            change("a"),
            change("b"),
            change("a"),
            change("c"),
            change("a"),
        ];
        let ops: Vec<&Op> = ops.iter().collect();
        assert_eq!(rounds(&ops), vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert!(rounds(&[]).is_empty());
    }

    #[test]
    fn a_later_record_of_a_pair_replaces_the_earlier_in_its_place() {
        let record = |branch: &str, state| BranchRecord {
            branch: BranchId::new(branch).unwrap(),
            op: BranchOp::Action,
            state,
            request: serde_json::json!({}),
            output: None,
            error: None,
            attempts: 1,
            updated_at: 0,
        };
        let rows = branch_rows([
            record("a", BranchState::Sent),
            record("b", BranchState::Sent),
            record("a", BranchState::Succeeded),
        ]);
        let got: Vec<(&str, &str)> = rows.iter().map(|r| (r.branch.as_str(), r.state)).collect();
        assert_eq!(got, [("a", "succeeded"), ("b", "sent")]);
    }

    #[test]
    fn records_sort_by_write_then_place_after_the_old_numbering() {
        assert!(seq(1, 0) > 1_000);
        assert!(seq(1, 5) < seq(2, 0));
        assert!(seq(7, 1) < seq(7, 2));
        assert_eq!(seq(u64::MAX, 3), i64::MAX);
    }

    #[test]
    fn placeholders_are_numbered_in_the_order_written_on_postgres_only() {
        let sql = |dialect| {
            Sql::new(dialect)
                .push("VALUES ")
                .rows(2, "(?, 1, ?)")
                .push(" AND ?")
                .text
        };
        assert_eq!(
            sql(Dialect::Postgres),
            "VALUES ($1, 1, $2), ($3, 1, $4) AND $5"
        );
        assert_eq!(sql(Dialect::Sqlite), "VALUES (?, 1, ?), (?, 1, ?) AND ?");
    }
}

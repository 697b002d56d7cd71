-- The participant barrier's table, for SQLite and PostgreSQL. Run by
-- `SqlBarrier::migrate`, which fills in the configured names (validated,
-- quoted): `{table}` (schema-qualified), and for the index `{index}` and
-- the table it is `ON` (qualified the way each engine wants). In
-- PostgreSQL a configured schema is created first. Idempotent.
--
-- One row per (transaction, branch, op) ever seen. `inserted_by` is the op
-- that wrote the row: the op itself, or the undo op that marked its
-- forward op "undone before it ran". `output` is the first call's answer
-- (JSON text); `created_at` is in ms since the Unix epoch, for purging.
CREATE TABLE IF NOT EXISTS {table} (
    tx_id       TEXT    NOT NULL,
    branch_id   TEXT    NOT NULL,
    op          TEXT    NOT NULL,
    inserted_by TEXT    NOT NULL,
    output      TEXT,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (tx_id, branch_id, op)
);
CREATE INDEX IF NOT EXISTS {index} ON {index_table} (created_at);

-- rampart-transaction log, version 1: transactions and their branch calls.
CREATE TABLE rampart_tx (
    id          TEXT    NOT NULL PRIMARY KEY,
    protocol    TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    decision    TEXT,
    input       TEXT    NOT NULL,
    plan        TEXT    NOT NULL,
    reason      TEXT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    deadline    BIGINT,
    version     BIGINT  NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX rampart_tx_claim ON rampart_tx (state, lease_until, created_at);
CREATE INDEX rampart_tx_purge ON rampart_tx (state, updated_at);
CREATE INDEX rampart_tx_created ON rampart_tx (created_at, id);

CREATE TABLE rampart_tx_branch (
    tx_id      TEXT    NOT NULL REFERENCES rampart_tx (id) ON DELETE CASCADE,
    branch     TEXT    NOT NULL,
    op         TEXT    NOT NULL,
    seq        BIGINT  NOT NULL,
    state      TEXT    NOT NULL,
    request    TEXT    NOT NULL,
    output     TEXT,
    error      TEXT,
    attempts   BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (tx_id, branch, op)
);

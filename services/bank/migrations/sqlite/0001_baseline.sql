-- The bank's schema as it was before versioned migrations: idempotent (IF NOT EXISTS), so that
-- a database made before them takes it in place. Never edit a released migration; add the next.
CREATE TABLE IF NOT EXISTS holders (
    name       TEXT PRIMARY KEY,
    pin_hash   TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id               TEXT PRIMARY KEY,
    balance_cents    INTEGER NOT NULL CHECK (balance_cents >= 0),
    interest_rate_bp INTEGER NOT NULL,
    fence_any        INTEGER NOT NULL DEFAULT 0,
    fence_write      INTEGER NOT NULL DEFAULT 0,
    created_ms       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS account_holders (
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    holder_name TEXT NOT NULL REFERENCES holders (name),
    PRIMARY KEY (account_id, holder_name)
);
CREATE INDEX IF NOT EXISTS account_holders_by_name ON account_holders (holder_name);
CREATE TABLE IF NOT EXISTS ledger (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id          TEXT NOT NULL REFERENCES accounts (id),
    request_id          TEXT NOT NULL,
    kind                TEXT NOT NULL,
    amount_cents        INTEGER NOT NULL,
    balance_after_cents INTEGER NOT NULL CHECK (balance_after_cents >= 0),
    counterparty        TEXT NOT NULL DEFAULT '',
    time_ms             INTEGER NOT NULL,
    UNIQUE (account_id, request_id)
);
CREATE TRIGGER IF NOT EXISTS ledger_is_append_only_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_is_append_only_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TABLE IF NOT EXISTS requests (
    request_id     TEXT PRIMARY KEY,
    params         TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    rejection      TEXT NOT NULL DEFAULT '',
    balance_cents  INTEGER NOT NULL,
    created_ms     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash  TEXT PRIMARY KEY,
    holder_name TEXT NOT NULL,
    expires_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    name            TEXT PRIMARY KEY,
    failures        INTEGER NOT NULL,
    locked_until_ms INTEGER NOT NULL
);

-- The security audit (see the README's "Audit"): one row per event, or per burst of identical
-- refusals (`count`). Append-only, like the ledger. No column ever holds a PIN, a token or a
-- hash: the caller is its certificate `principal` and its `peer` IP address.
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms   INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    method    TEXT NOT NULL,
    holder    TEXT NOT NULL DEFAULT '',
    account   TEXT NOT NULL DEFAULT '',
    principal TEXT NOT NULL DEFAULT '',
    peer      TEXT NOT NULL DEFAULT '',
    detail    TEXT NOT NULL DEFAULT '',
    count     INTEGER NOT NULL DEFAULT 1 CHECK (count > 0)
);
CREATE INDEX audit_by_holder ON audit (holder, id);
CREATE INDEX audit_by_time ON audit (time_ms);
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit is append-only'); END;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit is append-only'); END;

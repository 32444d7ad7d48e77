-- The doctor's schema as it was before versioned migrations: idempotent (IF NOT EXISTS), so that
-- a database made before them takes it in place. Never edit a released migration; add the next.
CREATE TABLE IF NOT EXISTS patients (
    name_key       TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    first_visit_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS visits (
    session_id TEXT PRIMARY KEY,
    name_key   TEXT NOT NULL REFERENCES patients (name_key),
    started_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS exchanges (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name_key     TEXT NOT NULL REFERENCES patients (name_key),
    session_id   TEXT NOT NULL REFERENCES visits (session_id),
    time_ms      INTEGER NOT NULL,
    patient_text TEXT NOT NULL,
    doctor_text  TEXT NOT NULL,
    mind         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS exchanges_by_patient ON exchanges (name_key, id);
CREATE TABLE IF NOT EXISTS memories (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name_key    TEXT NOT NULL REFERENCES patients (name_key),
    text        TEXT NOT NULL,
    laid_down_by INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS memories_by_patient ON memories (name_key, id);
CREATE TABLE IF NOT EXISTS recalls (
    memory_id   INTEGER PRIMARY KEY REFERENCES memories (id),
    exchange_id INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS exchanges_are_append_only BEFORE UPDATE ON exchanges
BEGIN SELECT RAISE(ABORT, 'case notes are append-only'); END;
CREATE TRIGGER IF NOT EXISTS exchanges_are_never_deleted BEFORE DELETE ON exchanges
BEGIN SELECT RAISE(ABORT, 'case notes are append-only'); END;

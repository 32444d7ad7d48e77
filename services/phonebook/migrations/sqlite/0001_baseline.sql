-- The phonebook's schema as it was before versioned migrations: idempotent (IF NOT EXISTS), so that
-- a database made before them takes it in place. Never edit a released migration; add the next.
CREATE TABLE IF NOT EXISTS entries (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL,
    name_key       TEXT NOT NULL,
    number         TEXT NOT NULL,
    display_number TEXT NOT NULL,
    label          TEXT NOT NULL DEFAULT '',
    version        INTEGER NOT NULL,
    create_ms      INTEGER NOT NULL,
    update_ms      INTEGER NOT NULL,
    UNIQUE (name_key, number)
);
CREATE INDEX IF NOT EXISTS entries_in_name_order ON entries (name_key, id);
CREATE INDEX IF NOT EXISTS entries_by_number ON entries (number);

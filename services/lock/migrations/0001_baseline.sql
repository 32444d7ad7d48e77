-- The lock's schema as it was before versioned migrations: idempotent (IF NOT EXISTS), so that
-- a database made before them takes it in place. Never edit a released migration; add the next.
CREATE TABLE IF NOT EXISTS epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);

-- The chat's schema as it was before versioned migrations: idempotent (IF NOT EXISTS), so that
-- a database made before them takes it in place. Never edit a released migration; add the next.
CREATE TABLE IF NOT EXISTS events (
    room              TEXT NOT NULL,
    seq               INTEGER NOT NULL,
    time_ms           INTEGER NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('message', 'joined', 'left')),
    name              TEXT NOT NULL,
    text              TEXT NOT NULL DEFAULT '',
    client_message_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_by_client_id ON events (room, client_message_id)
    WHERE client_message_id <> '';
CREATE TRIGGER IF NOT EXISTS events_are_append_only BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'transcripts are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_are_never_deleted BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'transcripts are append-only'); END;

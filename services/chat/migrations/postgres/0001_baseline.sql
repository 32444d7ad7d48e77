-- The chat's transcripts on PostgreSQL: the events as on SQLite, and each room's last seq, which
-- an append takes the next of in the same statement as it stores its event (so the sequence
-- stays gap-free whichever server appends: never a SEQUENCE, whose values a rollback loses).
-- Never edit a released migration; add the next.
CREATE TABLE rooms (
    name     TEXT COLLATE "C" PRIMARY KEY,
    last_seq BIGINT NOT NULL CHECK (last_seq > 0)
);
CREATE TABLE events (
    room              TEXT COLLATE "C" NOT NULL REFERENCES rooms (name),
    seq               BIGINT NOT NULL CHECK (seq > 0),
    time_ms           BIGINT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('message', 'joined', 'left')),
    name              TEXT NOT NULL,
    text              TEXT NOT NULL DEFAULT '',
    client_message_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (room, seq)
);
CREATE UNIQUE INDEX events_by_client_id ON events (room, client_message_id)
    WHERE client_message_id <> '';
CREATE FUNCTION transcripts_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'transcripts are append-only';
END
$$;
CREATE TRIGGER events_are_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION transcripts_are_append_only();
CREATE TRIGGER events_are_never_truncated BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION transcripts_are_append_only();
CREATE FUNCTION room_sequences_only_advance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.name <> OLD.name OR NEW.last_seq <> OLD.last_seq + 1 THEN
        RAISE EXCEPTION 'a room''s sequence only advances, one at a time';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER room_sequences_only_advance BEFORE UPDATE OR DELETE ON rooms
    FOR EACH ROW EXECUTE FUNCTION room_sequences_only_advance();
-- Every chat-server LISTENs on `chat_events`: a stored event wakes them (at its commit), and
-- each reads the room's events after the last one it delivered. The table is the truth; a
-- notification only says where to look.
CREATE FUNCTION announce_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chat_events', NEW.room);
    RETURN NULL;
END
$$;
CREATE TRIGGER events_are_announced AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION announce_event();
-- The chat-servers on this database, each with a presence lease it renews every few seconds (on
-- the database's clock). A server whose lease lapsed is lost: the first server to notice deletes
-- its row and its members, and stores each member's Left, in one transaction, so once.
CREATE TABLE servers (
    id          TEXT PRIMARY KEY,
    lease_until TIMESTAMPTZ NOT NULL
);
-- Every live Join, on whichever server: a name is held once per room, and a member token (kept
-- hashed, SHA-256) lets its member send through any server.
CREATE TABLE members (
    room       TEXT COLLATE "C" NOT NULL,
    name_key   TEXT NOT NULL,
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    server     TEXT NOT NULL,
    PRIMARY KEY (room, name_key)
);
CREATE INDEX members_by_server ON members (server);

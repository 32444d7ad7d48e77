-- Failed logins counted per (name, source), the source being the caller's certificate principal
-- or IP address, so that a stranger's failures lock out the stranger and not the customer (see
-- the README's "Logins"). Rows older than the longest lockout are pruned as logins come.
CREATE TABLE login_strikes (
    name            TEXT NOT NULL,
    source          TEXT NOT NULL,
    failures        INTEGER NOT NULL CHECK (failures > 0),
    locked_until_ms INTEGER NOT NULL,
    last_ms         INTEGER NOT NULL,
    PRIMARY KEY (name, source)
);
CREATE INDEX login_strikes_by_last ON login_strikes (last_ms);
-- The per-name counts these replace: lockouts in force when upgrading are forgotten.
DROP TABLE login_failures;

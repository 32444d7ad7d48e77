-- Patients get a key (issue "trust no caller III"): its SHA-256, hex. NULL for a patient stored
-- before keys existed: such a patient is refused until the operator issues a key with
-- `doctor-server issue-key`, so that nobody claims them by coming first.
ALTER TABLE patients ADD COLUMN key_hash TEXT;

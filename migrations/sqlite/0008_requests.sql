-- Requests to move money (top-ups, renewals, payments, auto-renew changes,
-- allocations), the decisions on them, and the hash-chained audit log.

CREATE TABLE requests (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    account       TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    -- Bumped by every write: writers name the version they read.
    version       INTEGER NOT NULL DEFAULT 0,
    requested_by  TEXT    NOT NULL,
    requested_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    -- Stored with the request, before any call to a cloud.
    idem_key      TEXT    NOT NULL UNIQUE,
    body          TEXT    NOT NULL, -- JSON: action, reason, cost, balance, tier, origin
    progress      TEXT,             -- JSON: what execution has done so far
    updated_at    INTEGER NOT NULL
);

CREATE INDEX requests_by_state ON requests (state, id);
CREATE INDEX requests_by_time ON requests (requested_at);

CREATE TABLE decisions (
    request   INTEGER NOT NULL REFERENCES requests (id),
    by_name   TEXT    NOT NULL,
    body      TEXT    NOT NULL, -- JSON: the decision
    -- One decision per person per request: a second click counts once.
    PRIMARY KEY (request, by_name)
);

CREATE TABLE audit_log (
    seq      INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    event    TEXT    NOT NULL,
    request  INTEGER,
    detail   TEXT    NOT NULL,
    prev     TEXT    NOT NULL,
    hash     TEXT    NOT NULL
);

CREATE INDEX audit_by_time ON audit_log (at);

-- The count and last hash, kept apart so that deleting the last entries shows.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT    NOT NULL
);

-- Append-only for purser itself; the hash chain shows anyone who gets around it.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

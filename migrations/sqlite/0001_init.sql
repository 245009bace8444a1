-- Times are milliseconds since the Unix epoch, UTC.

-- What each successful poll saw, as JSON; pruned after the retention period.
CREATE TABLE snapshots (
    id       INTEGER PRIMARY KEY,
    account  TEXT    NOT NULL,
    taken_at INTEGER NOT NULL,
    body     TEXT    NOT NULL
);
CREATE INDEX snapshots_by_account_time ON snapshots (account, taken_at);

-- How reading each account has been going.
CREATE TABLE poll_health (
    account              TEXT PRIMARY KEY,
    last_success_at      INTEGER,
    last_attempt_at      INTEGER,
    last_error           TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0
);

-- One row per occurrence of an alert condition; resolved rows stay as history.
CREATE TABLE alerts (
    id               INTEGER PRIMARY KEY,
    fingerprint      TEXT    NOT NULL,
    rule             TEXT    NOT NULL,
    account          TEXT    NOT NULL,
    resource         TEXT    NOT NULL,
    tier             TEXT    NOT NULL,
    severity         TEXT    NOT NULL CHECK (severity IN ('A', 'B', 'C')),
    rank             INTEGER NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    summary          TEXT    NOT NULL,
    started_at       INTEGER NOT NULL,
    fired_at         INTEGER,
    last_notified_at INTEGER,
    resolved_at      INTEGER
);
-- At most one open occurrence per fingerprint.
CREATE UNIQUE INDEX alerts_open_by_fingerprint ON alerts (fingerprint) WHERE state <> 'resolved';
CREATE INDEX alerts_open_by_account ON alerts (account) WHERE state <> 'resolved';

-- Notices to deliver, written in the same transaction as the alert change they
-- follow from. A row is delivered once, or given up on after its attempts.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    notice_id       TEXT    NOT NULL,
    output          TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    abandoned_at    INTEGER,
    last_error      TEXT,
    UNIQUE (notice_id, output)
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND abandoned_at IS NULL;

-- Each firing alert occurrence's escalation chain and response target.
CREATE TABLE escalations (
    fingerprint  TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    severity     TEXT    NOT NULL CHECK (severity IN ('A', 'B', 'C')),
    raised_at    INTEGER NOT NULL,
    due_at       INTEGER NOT NULL,
    clock        TEXT    NOT NULL CHECK (clock IN ('always', 'working')),
    phase        TEXT    NOT NULL CHECK (phase IN ('walking', 'exhausted', 'acknowledged', 'resolved')),
    round        INTEGER NOT NULL,
    round_start  INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    repeats_left INTEGER NOT NULL,
    next_at      INTEGER,
    acked_by     TEXT,
    acked_at     INTEGER,
    resolved_at  INTEGER,
    version      INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, started_at)
);
CREATE INDEX escalations_open ON escalations (phase) WHERE phase <> 'resolved';
CREATE INDEX escalations_by_raise ON escalations (raised_at);

-- Pages to people and pagers, written with the escalation step that sends
-- them; one per page id, delivered once or given up on.
CREATE TABLE pages (
    id              INTEGER PRIMARY KEY,
    page_id         TEXT    NOT NULL UNIQUE,
    fingerprint     TEXT    NOT NULL,
    started_at      INTEGER NOT NULL,
    recipient       TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    delivered_at    INTEGER,
    last_error      TEXT
);
CREATE INDEX pages_due ON pages (next_attempt_at) WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL;
CREATE INDEX pages_by_alert ON pages (fingerprint, started_at);

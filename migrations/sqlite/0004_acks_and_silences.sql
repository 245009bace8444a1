-- Who took an alert on, and when: it stops repeating until it resolves.
ALTER TABLE alerts ADD COLUMN acked_by TEXT;
ALTER TABLE alerts ADD COLUMN acked_at INTEGER;

-- Silences hold back the notices of matching alerts until they end. Kept after
-- they end, as a record of who muted what and why.
CREATE TABLE silences (
    id         INTEGER PRIMARY KEY,
    matchers   TEXT    NOT NULL, -- as typed back: "account=x,rule!=y"
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    reason     TEXT,
    ended_by   TEXT
);
CREATE INDEX silences_by_end ON silences (ends_at);

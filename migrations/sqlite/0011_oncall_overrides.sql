-- On-call overrides made in chat (`oncall override`); those written in the
-- config are not stored. Where overrides overlap the newest wins, so ids are
-- never reused.
CREATE TABLE oncall_overrides (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule  TEXT    NOT NULL,
    person    TEXT    NOT NULL,
    from_at   INTEGER NOT NULL,
    to_at     INTEGER NOT NULL,
    made_by   TEXT    NOT NULL,
    made_at   INTEGER NOT NULL,
    reason    TEXT,
    CHECK (to_at > from_at)
);
CREATE INDEX oncall_overrides_by_end ON oncall_overrides (to_at);

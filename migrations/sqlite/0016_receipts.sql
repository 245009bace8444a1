-- What a chat platform delivered and purser took (a Slack envelope id), so
-- a copy sent again after a reconnection runs once. Kept briefly.
CREATE TABLE receipts (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE INDEX receipts_at ON receipts (at);

-- Where a feed of updates was read up to (Telegram's update offset), so a
-- restart neither replays nor skips a batch.
CREATE TABLE cursors (
    source TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);

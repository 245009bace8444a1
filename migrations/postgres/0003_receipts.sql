-- What a chat platform delivered and a replica took (a Slack envelope id),
-- so a copy sent again after a reconnection, or to another replica, runs
-- once. Kept briefly.
CREATE TABLE receipts (
    source text NOT NULL,
    key text NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE INDEX receipts_at ON receipts (at);

-- Where a feed of updates was read up to (Telegram's update offset), so a
-- restart neither replays nor skips a batch.
CREATE TABLE cursors (
    source text PRIMARY KEY,
    position bigint NOT NULL
);

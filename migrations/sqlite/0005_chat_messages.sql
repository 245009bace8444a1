-- The chat message each alert occurrence was posted as, per output, so that
-- later notices edit it instead of posting anew.
CREATE TABLE chat_messages (
    fingerprint TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    output      TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    message     TEXT    NOT NULL, -- the platform's id for it (Slack: ts)
    PRIMARY KEY (fingerprint, started_at, output)
);

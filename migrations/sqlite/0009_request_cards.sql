-- The chat message each request was shown as, per output, and which
-- version of the request it shows, so that a change edits it once.
CREATE TABLE request_cards (
    request_id INTEGER NOT NULL REFERENCES requests (id),
    output     TEXT    NOT NULL,
    channel    TEXT    NOT NULL,
    message    TEXT    NOT NULL, -- the platform's id for it (Slack: ts)
    version    INTEGER NOT NULL, -- the request's version the message shows
    state      TEXT    NOT NULL, -- and its state then: a change of state is also told in a reply
    PRIMARY KEY (request_id, output)
);

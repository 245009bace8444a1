-- A snapshot's resources and orders change far less often than its
-- balance: they are kept once per account for each different content,
-- named by its SHA-256 (`digest`), and each snapshot row keeps only its
-- balance part and the digest of its inventory. Snapshots already kept are
-- moved over as they are, each with an inventory of its own.
CREATE TABLE inventories (
    id      INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    digest  TEXT NOT NULL,
    body    TEXT NOT NULL
);
-- Apart from the bodies, which span pages: a lookup by name compares names.
CREATE UNIQUE INDEX inventories_by_digest ON inventories (account, digest);
ALTER TABLE snapshots ADD COLUMN digest TEXT;
INSERT INTO inventories (account, digest, body)
    SELECT account, 'kept-' || id,
           json_object('resources', json(COALESCE(json_extract(body, '$.resources'), '[]')),
                       'orders', json(COALESCE(json_extract(body, '$.orders'), '[]')))
    FROM snapshots;
UPDATE snapshots SET digest = 'kept-' || id, body = json_remove(body, '$.resources', '$.orders');
-- Judging reads each account's window of balances at every poll. Rows are
-- kept in the order they were written, a cycle's accounts interleaved, so
-- a window of a week is as many pages as snapshots; the index holds the
-- small balance part too, and reads an account's window from a page or two.
DROP INDEX snapshots_by_account_time;
CREATE INDEX snapshots_by_account_time ON snapshots (account, taken_at, digest, body);

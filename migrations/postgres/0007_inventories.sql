-- A snapshot's resources and orders change far less often than its
-- balance: they are kept once per account for each different content,
-- named by its SHA-256 (`digest`), and each snapshot row keeps only its
-- balance part and the digest of its inventory. Snapshots already kept are
-- moved over as they are, each with an inventory of its own. The foreign
-- key makes pruning an inventory that a poll has just taken up again fail
-- rather than leave that snapshot without its resources.
CREATE TABLE inventories (
    account text  NOT NULL,
    digest  text  NOT NULL,
    body    jsonb NOT NULL,
    PRIMARY KEY (account, digest)
);
ALTER TABLE snapshots ADD COLUMN digest text;
INSERT INTO inventories (account, digest, body)
    SELECT account, 'kept-' || id,
           jsonb_build_object('resources', COALESCE(body -> 'resources', '[]'::jsonb),
                              'orders', COALESCE(body -> 'orders', '[]'::jsonb))
    FROM snapshots;
UPDATE snapshots SET digest = 'kept-' || id, body = body - 'resources' - 'orders';
ALTER TABLE snapshots ALTER COLUMN digest SET NOT NULL;
ALTER TABLE snapshots ADD FOREIGN KEY (account, digest) REFERENCES inventories (account, digest);
CREATE INDEX snapshots_by_inventory ON snapshots (account, digest);

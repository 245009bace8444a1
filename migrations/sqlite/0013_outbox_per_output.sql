-- Each output is delivered on its own, so pending rows are found per
-- output; notices given up on are kept, found per account, and said.
ALTER TABLE outbox ADD COLUMN account TEXT;
UPDATE outbox SET account = json_extract(body, '$.account');
CREATE INDEX outbox_pending_by_output ON outbox (output, next_attempt_at)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;
CREATE INDEX outbox_failed ON outbox (account)
    WHERE abandoned_at IS NOT NULL AND delivered_at IS NULL;

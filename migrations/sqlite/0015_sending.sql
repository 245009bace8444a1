-- When a send began and has not ended (delivered or failed): set at a
-- start, such a row was being sent when its process died, and its receiver
-- may have it already. It goes again with the same id, counted as a repeat.
ALTER TABLE outbox ADD COLUMN sending_at INTEGER;
ALTER TABLE pages ADD COLUMN sending_at INTEGER;

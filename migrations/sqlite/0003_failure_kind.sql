-- What kind of failure the latest poll met ('refused', 'unreachable',
-- 'rejected', 'malformed'): a refused key alerts at once, the rest after a
-- grace period.
ALTER TABLE poll_health ADD COLUMN last_error_kind TEXT;

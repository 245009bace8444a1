-- When a send began and has not ended (delivered or failed): set when the
-- next leader picks the row up, it was being sent when its replica died,
-- and its receiver may have it already. It goes again with the same id,
-- counted as a repeat.
ALTER TABLE outbox ADD COLUMN sending_at timestamptz;
ALTER TABLE pages ADD COLUMN sending_at timestamptz;

-- Whatever replica writes a notice or changes a request (a chat command
-- answered on a standby), the leader hears of it at once: it sends,
-- escalates and edits cards without waiting for its next look.
CREATE FUNCTION purser_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('purser_changes', TG_ARGV[0]);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER outbox_written AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION purser_changed('outbox');
-- A notice queued again by `purser outbox retry`.
CREATE TRIGGER outbox_requeued AFTER UPDATE OF abandoned_at ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION purser_changed('outbox');
-- A request asked for, decided or moved; not a lease's heartbeat.
CREATE TRIGGER requests_written AFTER INSERT OR UPDATE OF version ON requests
    FOR EACH STATEMENT EXECUTE FUNCTION purser_changed('requests');

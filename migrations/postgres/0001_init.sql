-- The PostgreSQL store: the same tables as the SQLite one in meaning, in
-- native types. Times are timestamptz, money numeric (never a float), JSON
-- bodies jsonb.

-- What each successful poll saw; pruned after the retention period.
CREATE TABLE snapshots (
    id       bigserial   PRIMARY KEY,
    account  text        NOT NULL,
    taken_at timestamptz NOT NULL,
    body     jsonb       NOT NULL
);
CREATE INDEX snapshots_by_account_time ON snapshots (account, taken_at);

-- How reading each account has been going.
CREATE TABLE poll_health (
    account              text PRIMARY KEY,
    last_success_at      timestamptz,
    last_attempt_at      timestamptz,
    last_error           text,
    last_error_kind      text,
    consecutive_failures integer NOT NULL DEFAULT 0
);

-- One row per occurrence of an alert condition; resolved rows stay as history.
CREATE TABLE alerts (
    id               bigserial   PRIMARY KEY,
    fingerprint      text        NOT NULL,
    rule             text        NOT NULL,
    account          text        NOT NULL,
    resource         text        NOT NULL,
    tier             text        NOT NULL,
    severity         text        NOT NULL CHECK (severity IN ('A', 'B', 'C')),
    rank             integer     NOT NULL,
    state            text        NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    summary          text        NOT NULL,
    started_at       timestamptz NOT NULL,
    fired_at         timestamptz,
    last_notified_at timestamptz,
    resolved_at      timestamptz,
    acked_by         text,
    acked_at         timestamptz
);
-- At most one open occurrence per fingerprint.
CREATE UNIQUE INDEX alerts_open_by_fingerprint ON alerts (fingerprint) WHERE state <> 'resolved';
CREATE INDEX alerts_open_by_account ON alerts (account) WHERE state <> 'resolved';

-- Notices to deliver, written in the same transaction as the alert change
-- they follow from. A row is delivered once, or kept as failed.
CREATE TABLE outbox (
    id              bigserial   PRIMARY KEY,
    notice_id       text        NOT NULL,
    output          text        NOT NULL,
    body            jsonb       NOT NULL,
    account         text,
    created_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz,
    abandoned_at    timestamptz,
    last_error      text,
    UNIQUE (notice_id, output)
);
CREATE INDEX outbox_pending_by_output ON outbox (output, next_attempt_at)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;
CREATE INDEX outbox_failed ON outbox (account)
    WHERE abandoned_at IS NOT NULL AND delivered_at IS NULL;

-- Balances read off a portal by a person: the account's, or one contract's
-- money, or the money not yet allocated (bucket_kind NULL: the account's).
CREATE TABLE balance_entries (
    id          bigserial   PRIMARY KEY,
    account     text        NOT NULL,
    amount      numeric     NOT NULL,
    currency    text        NOT NULL,
    as_of       timestamptz NOT NULL,
    entered_by  text        NOT NULL,
    entered_at  timestamptz NOT NULL,
    bucket_kind text,
    bucket_name text
);
CREATE INDEX balance_entries_by_account ON balance_entries (account, as_of);
CREATE INDEX balance_entries_by_bucket ON balance_entries (account, bucket_kind, bucket_name, as_of);

CREATE TABLE silences (
    id         bigserial   PRIMARY KEY,
    matchers   text        NOT NULL, -- as typed back: "account=x,rule!=y"
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    created_by text        NOT NULL,
    reason     text,
    ended_by   text
);
CREATE INDEX silences_by_end ON silences (ends_at);

-- Which chat message shows which alert, per output.
CREATE TABLE chat_messages (
    fingerprint text        NOT NULL,
    started_at  timestamptz NOT NULL,
    output      text        NOT NULL,
    channel     text        NOT NULL,
    message     text        NOT NULL, -- the platform's id for it (Slack: ts)
    notice      jsonb,
    position    integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (fingerprint, started_at, output)
);
CREATE INDEX chat_messages_by_message ON chat_messages (channel, message);

CREATE TABLE account_views (
    account  text        PRIMARY KEY,
    body     jsonb       NOT NULL, -- taken_at, available, forecast
    taken_at timestamptz NOT NULL  -- of the snapshot it shows
);

CREATE TABLE requests (
    id           bigserial   PRIMARY KEY,
    account      text        NOT NULL,
    kind         text        NOT NULL,
    state        text        NOT NULL,
    -- Bumped by every write: writers name the version they read.
    version      bigint      NOT NULL DEFAULT 0,
    requested_by text        NOT NULL,
    requested_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    -- Stored with the request, before any call to a cloud.
    idem_key     text        NOT NULL UNIQUE,
    body         jsonb       NOT NULL, -- action, reason, cost, balance, tier, origin
    progress     jsonb,                -- what execution has done so far
    updated_at   timestamptz NOT NULL,
    lease_holder text,
    lease_until  timestamptz
);
CREATE INDEX requests_by_state ON requests (state, id);
CREATE INDEX requests_by_time ON requests (requested_at);

CREATE TABLE decisions (
    seq     bigserial,             -- the order they were given in
    request bigint NOT NULL REFERENCES requests (id),
    by_name text   NOT NULL,
    body    jsonb  NOT NULL,
    -- One decision per person per request: a second click counts once.
    PRIMARY KEY (request, by_name)
);

-- The hash-chained audit log; its head is kept apart.
CREATE TABLE audit_log (
    seq     bigint      PRIMARY KEY,
    at      timestamptz NOT NULL,
    actor   text        NOT NULL,
    event   text        NOT NULL,
    request bigint,
    detail  text        NOT NULL, -- exactly as hashed
    prev    text        NOT NULL,
    hash    text        NOT NULL
);
CREATE INDEX audit_by_time ON audit_log (at);

CREATE TABLE audit_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint  NOT NULL,
    hash text    NOT NULL
);

CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE request_cards (
    request_id bigint  NOT NULL REFERENCES requests (id),
    output     text    NOT NULL,
    channel    text    NOT NULL,
    message    text    NOT NULL, -- the platform's id for it (Slack: ts)
    version    bigint  NOT NULL, -- the request's version the message shows
    state      text    NOT NULL, -- and its state then
    PRIMARY KEY (request_id, output)
);

CREATE TABLE escalations (
    fingerprint  text        NOT NULL,
    started_at   timestamptz NOT NULL,
    severity     text        NOT NULL CHECK (severity IN ('A', 'B', 'C')),
    raised_at    timestamptz NOT NULL,
    due_at       timestamptz NOT NULL,
    clock        text        NOT NULL CHECK (clock IN ('always', 'working')),
    phase        text        NOT NULL CHECK (phase IN ('walking', 'exhausted', 'acknowledged', 'resolved')),
    round        integer     NOT NULL,
    round_start  timestamptz NOT NULL,
    position     integer     NOT NULL,
    repeats_left integer     NOT NULL,
    next_at      timestamptz,
    acked_by     text,
    acked_at     timestamptz,
    resolved_at  timestamptz,
    version      bigint      NOT NULL,
    PRIMARY KEY (fingerprint, started_at)
);
CREATE INDEX escalations_open ON escalations (phase) WHERE phase <> 'resolved';
CREATE INDEX escalations_by_raise ON escalations (raised_at);

CREATE TABLE pages (
    id              bigserial   PRIMARY KEY,
    page_id         text        NOT NULL UNIQUE,
    fingerprint     text        NOT NULL,
    started_at      timestamptz NOT NULL,
    recipient       text        NOT NULL,
    event           text        NOT NULL,
    body            jsonb       NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    delivered_at    timestamptz,
    last_error      text
);
CREATE INDEX pages_due ON pages (next_attempt_at)
    WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL;
CREATE INDEX pages_by_alert ON pages (fingerprint, started_at);

CREATE TABLE oncall_overrides (
    id       bigserial   PRIMARY KEY,
    schedule text        NOT NULL,
    person   text        NOT NULL,
    from_at  timestamptz NOT NULL,
    to_at    timestamptz NOT NULL,
    made_by  text        NOT NULL,
    made_at  timestamptz NOT NULL,
    reason   text,
    CHECK (to_at > from_at)
);
CREATE INDEX oncall_overrides_by_end ON oncall_overrides (to_at);

-- Leadership among replicas: one row; the holder renews it before it
-- expires, and every write that acts on leadership names the token it holds,
-- which grows at each change of holder.
CREATE TABLE leadership (
    id         integer     PRIMARY KEY CHECK (id = 1),
    holder     text        NOT NULL,
    token      bigint      NOT NULL,
    since      timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

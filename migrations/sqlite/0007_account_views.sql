-- Each account's latest balance and forecast, rewritten at every
-- evaluation: what fleet-wide chat answers read instead of every history.
CREATE TABLE account_views (
    account    TEXT    PRIMARY KEY,
    body       TEXT    NOT NULL, -- JSON: taken_at, available, forecast
    taken_at   INTEGER NOT NULL  -- of the snapshot it shows
);

-- Balances entered by a person, for accounts whose cloud has no balance API.
-- Append-only: the newest entry per account is the one in force.
CREATE TABLE balance_entries (
    id         INTEGER PRIMARY KEY,
    account    TEXT    NOT NULL,
    amount     TEXT    NOT NULL,
    currency   TEXT    NOT NULL,
    as_of      INTEGER NOT NULL,
    entered_by TEXT    NOT NULL,
    entered_at INTEGER NOT NULL
);
CREATE INDEX balance_entries_by_account ON balance_entries (account, as_of);

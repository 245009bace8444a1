-- Judging now reads two snapshots of an account's window (the first and
-- the newest: their tallies sum what lies between), not all of it. An index
-- that held each row's balance part made every poll's insert dirty its
-- account's own page of a wide index, which grew with the history kept; a
-- narrow one packs many accounts to a page.
DROP INDEX snapshots_by_account_time;
CREATE INDEX snapshots_by_account_time ON snapshots (account, taken_at);

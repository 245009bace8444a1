-- Counts the writes of account_views, in the same transaction as each, so
-- that a reader keeps its copy of the views until the count moves: a
-- question about a whole fleet then reads one number, not every view.
CREATE TABLE views_written (
    n INTEGER NOT NULL
);
INSERT INTO views_written (n) VALUES (0);

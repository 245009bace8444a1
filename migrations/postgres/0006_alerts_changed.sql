-- Numbers each write of an alert, in the transaction that makes it: the
-- escalator reads only the alerts changed since the number it last saw,
-- not every open alert, each time something is written. A writer takes the
-- number (and the row's lock) before it touches an alert, so numbers
-- commit in order and a reader never skips one still being written.
ALTER TABLE alerts ADD COLUMN changed bigint NOT NULL DEFAULT 0;
CREATE INDEX alerts_by_change ON alerts (changed);
CREATE TABLE alerts_written (
    n bigint NOT NULL
);
INSERT INTO alerts_written (n) VALUES (0);

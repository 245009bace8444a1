-- Numbers each write of an alert, in the transaction that makes it: the
-- escalator reads only the alerts changed since the number it last saw,
-- not every open alert, each time something is written.
ALTER TABLE alerts ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX alerts_by_change ON alerts (changed);
CREATE TABLE alerts_written (
    n INTEGER NOT NULL
);
INSERT INTO alerts_written (n) VALUES (0);

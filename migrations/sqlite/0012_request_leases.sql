-- Who is carrying out a request now, and until when unless renewed: a
-- runner that dies stops renewing, and another takes over once it lapses.
ALTER TABLE requests ADD COLUMN lease_holder TEXT;
ALTER TABLE requests ADD COLUMN lease_until  INTEGER;

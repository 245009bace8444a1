-- The firing alerts in the order chat lists them, so that one page of a
-- long list is read without sorting every open alert.
CREATE INDEX alerts_firing_in_order ON alerts (severity, account, id) WHERE state = 'firing';

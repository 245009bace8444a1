-- A hand-entered balance may be of one part of an account: a service
-- contract's money or the unallocated money (clouds with no API for them).
-- NULL: the account's available balance.
ALTER TABLE balance_entries ADD COLUMN bucket_kind TEXT;
ALTER TABLE balance_entries ADD COLUMN bucket_name TEXT;
CREATE INDEX balance_entries_by_bucket ON balance_entries (account, bucket_kind, bucket_name, as_of);

-- The document an Idempotency-Key was first used for: a retry must send the
-- same one, and a different document under a used key is refused.
ALTER TABLE tasks ADD COLUMN idempotency_fingerprint text;

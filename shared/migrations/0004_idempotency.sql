-- Idempotency-Key on uploads: a caller's retry of the same upload finds the
-- task its first attempt made, instead of starting a second one. The key
-- belongs to the client that sent it.
ALTER TABLE tasks ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX tasks_idempotency ON tasks (submitted_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

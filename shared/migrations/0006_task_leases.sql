-- Durable tasks run by several orchestrator replicas. A replica runs a task
-- only while it holds the task's lease, and renews it as it goes; a lease
-- left to expire (the replica crashed) lets another replica claim the task.
-- A task whose dependency was down waits until not_before, with last_error
-- saying why.
ALTER TABLE tasks
    ADD COLUMN lease_owner      text,
    ADD COLUMN lease_expires_at timestamptz,
    ADD COLUMN not_before       timestamptz,
    ADD COLUMN last_error       text,
    -- The object a task reads, as S3 described it when it was submitted;
    -- one running or finished task per object (a repeated S3 event or a
    -- client's retry finds it), until it fails or a reprocess replaces it.
    ADD COLUMN object_version   text;

CREATE UNIQUE INDEX tasks_current_object ON tasks (s3_key, object_version)
    WHERE object_version IS NOT NULL;


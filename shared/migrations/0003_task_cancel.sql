-- A2A CancelTask: a task may end canceled. Every update of a running task is
-- guarded by its status, so a canceled task stays canceled whichever replica
-- runs it.
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('pending', 'extracting', 'validating', 'archiving',
                      'completed', 'failed', 'canceled'));

DROP INDEX tasks_unfinished;
CREATE INDEX tasks_unfinished ON tasks (created_at)
    WHERE status NOT IN ('completed', 'failed', 'canceled');

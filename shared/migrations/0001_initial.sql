-- Tasks: one per accepted document, moving through the pipeline's stages.
CREATE TABLE tasks (
    id            uuid PRIMARY KEY,
    s3_key        text NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'extracting', 'validating',
                                    'archiving', 'completed', 'failed')),
    stage         text,
    reason        text,
    reason_code   text,
    document_id   uuid,
    result        jsonb,
    timings       jsonb NOT NULL DEFAULT '{}'::jsonb,
    attempts      integer NOT NULL DEFAULT 0,
    submitted_by  text NOT NULL,
    correlation_id text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE INDEX tasks_unfinished ON tasks (created_at)
    WHERE status NOT IN ('completed', 'failed');
CREATE INDEX tasks_s3_key ON tasks (s3_key);

-- Documents: one row per S3 key and content, whatever the number of runs.
CREATE TABLE documents (
    id               uuid PRIMARY KEY,
    s3_key           text NOT NULL,
    content_hash     text NOT NULL,
    file_name        text NOT NULL,
    content_type     text NOT NULL,
    format           text NOT NULL,
    document_type    text NOT NULL,
    size_bytes       bigint NOT NULL,
    page_count       integer,
    extracted_data   jsonb NOT NULL,
    validation       jsonb NOT NULL,
    validation_score integer NOT NULL CHECK (validation_score BETWEEN 0 AND 100),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (s3_key, content_hash)
);
CREATE INDEX documents_type ON documents (document_type);

-- One row per pipeline step of a task; retrying a step does not add a row.
CREATE TABLE processing_log (
    id           bigserial PRIMARY KEY,
    document_id  uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    task_id      uuid NOT NULL,
    step         text NOT NULL,
    status       text NOT NULL,
    duration_ms  double precision,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (task_id, step)
);
CREATE INDEX processing_log_document ON processing_log (document_id);

-- CSV imports (tables in 002): the job's region and file, where its batches stand, and why it
-- failed. A job is created first (awaiting_upload), its file is staged into import_rows in
-- one transaction (queued), then batches are applied; each batch moves last_row, position and
-- the counters in the same transaction as its writes (docs/import-export.md).

ALTER TABLE import_jobs
    ADD COLUMN region      text,
    ADD COLUMN file_bytes  bigint      NOT NULL DEFAULT 0,
    -- The row_no the last applied batch ended on: the next batch starts after it.
    ADD COLUMN last_row    integer     NOT NULL DEFAULT 0,
    -- Rows in the error report: failed rows and rows skipped for a reason (suppressed).
    ADD COLUMN error_rows  integer     NOT NULL DEFAULT 0,
    ADD COLUMN error       text,
    ADD COLUMN started_at  timestamptz,
    ADD COLUMN updated_at  timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT import_jobs_status
        CHECK (status IN ('awaiting_upload', 'queued', 'running', 'done', 'failed', 'cancelled')),
    ADD CONSTRAINT import_jobs_on_duplicate CHECK (on_duplicate IN ('skip', 'update', 'create'));

-- Recent jobs of a workspace, newest first, by an opaque (created_at, id) cursor.
DROP INDEX import_jobs_workspace;
CREATE INDEX import_jobs_workspace ON import_jobs (workspace_id, created_at DESC, id DESC);

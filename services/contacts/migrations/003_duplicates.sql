-- Duplicate scans: a scan reads every live contact of a workspace and stores the pairs that
-- look like one person twice, scored 0-100 with the rules that matched (docs/duplicates.md).

CREATE TABLE duplicate_scans (
    id                uuid        PRIMARY KEY,
    workspace_id      text        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    requested_by      text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    -- Moved forward while the scan's process works on it; a stale one means that process died.
    heartbeat_at      timestamptz NOT NULL DEFAULT now(),
    contacts_scanned  integer     NOT NULL DEFAULT 0,
    blocks_compared   integer     NOT NULL DEFAULT 0,
    blocks_skipped    integer     NOT NULL DEFAULT 0,
    comparisons       bigint      NOT NULL DEFAULT 0,
    candidates        integer     NOT NULL DEFAULT 0,
    -- The largest blocks left out for their size, as [{"kind", "key", "size"}].
    skipped           jsonb       NOT NULL DEFAULT '[]',
    error             text
);
CREATE INDEX duplicate_scans_workspace ON duplicate_scans (workspace_id, created_at DESC);
-- At most one scan queued or running per workspace.
CREATE UNIQUE INDEX duplicate_scans_active ON duplicate_scans (workspace_id)
    WHERE status IN ('queued', 'running');

CREATE TABLE duplicate_candidates (
    scan_id    uuid     NOT NULL REFERENCES duplicate_scans (id) ON DELETE CASCADE,
    contact_a  uuid     NOT NULL,
    contact_b  uuid     NOT NULL,
    score      smallint NOT NULL CHECK (score BETWEEN 0 AND 100),
    reasons    jsonb    NOT NULL,
    PRIMARY KEY (scan_id, contact_a, contact_b),
    CHECK (contact_a < contact_b)
);
-- Pages of a scan's candidates, highest score first (read backwards).
CREATE INDEX duplicate_candidates_page ON duplicate_candidates (scan_id, score, contact_a, contact_b);

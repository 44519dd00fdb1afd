-- A ticket's priority, type, tags and version (its ETag), when it was last solved, and the
-- history of every change to them. Existing rows stay valid: normal priority, no type, no
-- tags, version 1.
ALTER TABLE tickets
    ADD COLUMN priority  text        NOT NULL DEFAULT 'normal'
        CONSTRAINT tickets_priority CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    ADD COLUMN type      text
        CONSTRAINT tickets_type CHECK (type IN ('question', 'incident', 'problem', 'task')),
    ADD COLUMN tags      text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN version   integer     NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN solved_at timestamptz,
    ADD CONSTRAINT tickets_status
        CHECK (status IN ('new', 'open', 'pending', 'on_hold', 'solved', 'closed'));

-- One row per changed field: who changed it, when, and its value before and after (JSON).
-- The actor is the caller's subject, or "system" for what ticketing did by itself (a customer's
-- reply reopening a solved ticket).
CREATE TABLE ticket_history (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  text        NOT NULL,
    ticket_id     uuid        NOT NULL REFERENCES tickets (id),
    at            timestamptz NOT NULL DEFAULT now(),
    actor         text        NOT NULL,
    field         text        NOT NULL,
    old           jsonb,
    new           jsonb
);
CREATE INDEX ticket_history_by_ticket ON ticket_history (workspace_id, ticket_id, id DESC);

-- Erasures a service has done and not yet confirmed to contacts (crmkit.erasure). Written in
-- the transaction that erases; a background task confirms them over gRPC and deletes the row,
-- so that contacts being down never holds up the consumer of crm.contacts.v1.
CREATE TABLE IF NOT EXISTS pending_erasure_confirmations (
    workspace_id     text        NOT NULL,
    contact_id       uuid        NOT NULL,
    erased_at        timestamptz NOT NULL DEFAULT now(),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    PRIMARY KEY (workspace_id, contact_id)
);
CREATE INDEX IF NOT EXISTS pending_erasure_confirmations_due ON pending_erasure_confirmations (next_attempt_at);

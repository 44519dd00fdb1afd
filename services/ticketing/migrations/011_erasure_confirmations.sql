-- Erasures done here and not yet confirmed to contacts. Written in the transaction that
-- anonymises the tickets; a background task confirms them over gRPC and deletes the row, so
-- that contacts being down never holds up the consumer of crm.contacts.v1.
CREATE TABLE erasure_confirmations (
    workspace_id     text        NOT NULL,
    contact_id       uuid        NOT NULL,
    erased_at        timestamptz NOT NULL DEFAULT now(),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    PRIMARY KEY (workspace_id, contact_id)
);
CREATE INDEX erasure_confirmations_due ON erasure_confirmations (next_attempt_at);

-- Activity per contact, recorded from crm.interactions.v1 (deals and activities come later).
CREATE TABLE contact_activity (
    workspace_id       text        NOT NULL,
    contact_id         uuid        NOT NULL,
    interaction_count  bigint      NOT NULL DEFAULT 0,
    last_activity_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, contact_id)
);

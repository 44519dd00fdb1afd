CREATE TABLE tickets (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    contact_id    uuid        NOT NULL,
    channel       text        NOT NULL,
    subject       text        NOT NULL DEFAULT '',
    status        text        NOT NULL,
    message_count integer     NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tickets_by_workspace ON tickets (workspace_id, created_at DESC, id DESC);
CREATE INDEX tickets_by_contact ON tickets (workspace_id, contact_id, created_at DESC);

-- Every message of a ticket; an interaction is threaded once.
CREATE TABLE ticket_messages (
    workspace_id    text        NOT NULL,
    interaction_id  text        NOT NULL,
    ticket_id       uuid        NOT NULL REFERENCES tickets (id),
    occurred_at     timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, interaction_id)
);
CREATE INDEX ticket_messages_by_ticket ON ticket_messages (ticket_id, occurred_at);

-- The keys a later message can name to continue a ticket (email Message-IDs, chat sessions).
CREATE TABLE thread_keys (
    workspace_id  text NOT NULL,
    key           text NOT NULL,
    ticket_id     uuid NOT NULL REFERENCES tickets (id),
    PRIMARY KEY (workspace_id, key)
);

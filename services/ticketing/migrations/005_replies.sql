-- Agents' replies and internal notes beside the customers' messages, their delivery, and macros.
--
-- ticket_messages: `seq` is the order ticketing learnt each message in (what an agent "has
-- seen"; collision detection compares it); a reply's `interaction_id` is its outbound id (the
-- OutboundMessage id sent to ingest), `message_id` the Message-ID ingest gave the email it
-- sent, `delivery_status` queued -> sent -> delivered -> read, or failed / bounced (null for
-- inbound messages and notes); `attachments` are references ([{ref, filename, content_type,
-- size}]), never the bytes; `macro_id` the macro that wrote it, if one did.
ALTER TABLE ticket_messages
    ADD COLUMN seq             bigint GENERATED ALWAYS AS IDENTITY,
    ADD COLUMN attachments     jsonb       NOT NULL DEFAULT '[]',
    ADD COLUMN message_id      text,
    ADD COLUMN delivery_status text
        CONSTRAINT ticket_messages_delivery_status
        CHECK (delivery_status IN ('queued', 'sent', 'delivered', 'read', 'failed', 'bounced')),
    ADD COLUMN delivery_error  text,
    ADD COLUMN delivery_at     timestamptz,
    ADD COLUMN macro_id        uuid;
CREATE UNIQUE INDEX ticket_messages_by_seq ON ticket_messages (workspace_id, ticket_id, seq);

-- The order thread keys were learnt in: a ticket's msgid keys in that order are the email
-- chain a reply's References carry.
ALTER TABLE thread_keys ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE INDEX thread_keys_by_ticket ON thread_keys (workspace_id, ticket_id, seq);

-- Canned responses: a body template with placeholders and field actions, applied in one go.
CREATE TABLE macros (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    name          text        NOT NULL,
    body          text        NOT NULL DEFAULT '',
    internal      boolean     NOT NULL DEFAULT false,
    actions       jsonb       NOT NULL DEFAULT '{}',
    version       integer     NOT NULL DEFAULT 1,
    created_by    text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX macros_by_name ON macros (workspace_id, lower(name));
CREATE INDEX macros_by_workspace ON macros (workspace_id, name, id);

-- Tickets linked to tickets: a follow-up opened by a reply to a finished ticket, or two
-- tickets an agent linked. One row per pair, from the newer (or linking) ticket.
CREATE TABLE ticket_links (
    workspace_id  text        NOT NULL,
    ticket_id     uuid        NOT NULL REFERENCES tickets (id),
    linked_id     uuid        NOT NULL REFERENCES tickets (id),
    kind          text        NOT NULL CONSTRAINT ticket_links_kind CHECK (kind IN ('follow_up', 'related')),
    created_by    text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, ticket_id, linked_id),
    CONSTRAINT ticket_links_not_itself CHECK (ticket_id <> linked_id)
);
CREATE INDEX ticket_links_by_linked ON ticket_links (workspace_id, linked_id);

-- Agents who follow a ticket (they are told of its changes; the ticket is in their views).
CREATE TABLE ticket_followers (
    workspace_id  text        NOT NULL,
    ticket_id     uuid        NOT NULL REFERENCES tickets (id),
    agent         text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, ticket_id, agent)
);
CREATE INDEX ticket_followers_by_agent ON ticket_followers (workspace_id, agent);

-- A workspace's own ticketing settings; a workspace without a row has the defaults.
CREATE TABLE ticketing_settings (
    workspace_id        text    PRIMARY KEY,
    reopen_window_days  integer NOT NULL CHECK (reopen_window_days BETWEEN 0 AND 365),
    version             integer NOT NULL
);

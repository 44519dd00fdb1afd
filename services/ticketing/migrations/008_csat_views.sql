-- CSAT surveys, saved views, and the indexes that keep views' first pages and reports fast.

-- One survey per solve: sent to the requester when the ticket goes to solved, answered once
-- through a signed link. A later solve (after a reopen) supersedes the unanswered ones before
-- it. The agent is the ticket's assignee (or the author of its last reply) when it was solved.
CREATE TABLE csat_surveys (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    ticket_id     uuid        NOT NULL REFERENCES tickets (id),
    contact_id    uuid        NOT NULL,
    channel       text        NOT NULL,
    agent         text,
    team_id       uuid,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    superseded_at timestamptz,
    rating        smallint    CONSTRAINT csat_surveys_rating CHECK (rating BETWEEN 1 AND 5),
    comment       text        CONSTRAINT csat_surveys_comment CHECK (length(comment) <= 2000),
    rated_at      timestamptz,
    CONSTRAINT csat_surveys_rated CHECK ((rating IS NULL) = (rated_at IS NULL))
);
CREATE INDEX csat_surveys_by_ticket ON csat_surveys (workspace_id, ticket_id, created_at DESC);
CREATE INDEX csat_surveys_by_created ON csat_surveys (workspace_id, created_at);
CREATE INDEX csat_surveys_rated ON csat_surveys (workspace_id, rated_at) WHERE rated_at IS NOT NULL;

-- A saved view: a named filter and sort, the owner's own or shared with the workspace.
CREATE TABLE ticket_views (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    owner         text        NOT NULL,
    shared        boolean     NOT NULL DEFAULT false,
    name          text        NOT NULL,
    filters       jsonb       NOT NULL DEFAULT '{}',
    sort          text        NOT NULL DEFAULT '-created_at',
    version       integer     NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ticket_views_by_workspace ON ticket_views (workspace_id, name, id);

-- Views list newest first by created or updated time under filters: the typical first page
-- (a status or two, maybe a channel or priority) walks one of these in order and stops at the
-- page size. Tags are matched through the GIN index. The status index carries the other
-- filtered columns so that a view's count is an index-only scan (no heap visit per ticket).
CREATE INDEX tickets_by_status ON tickets (workspace_id, status, created_at DESC, id DESC)
    INCLUDE (priority, channel, type, assignee, team_id);
CREATE INDEX tickets_by_updated ON tickets (workspace_id, updated_at DESC, id DESC);
CREATE INDEX tickets_tags ON tickets USING gin (tags);
-- Reports: tickets created in a range, and each ticket's first public reply.
CREATE INDEX ticket_messages_replies ON ticket_messages (ticket_id, occurred_at)
    WHERE direction = 'reply';

-- Views of one person's or one team's tickets (tickets.assignee and team_id, migration 006).
CREATE INDEX tickets_by_assignee_created ON tickets (workspace_id, assignee, created_at DESC, id DESC);
CREATE INDEX tickets_by_team_created ON tickets (workspace_id, team_id, created_at DESC, id DESC);

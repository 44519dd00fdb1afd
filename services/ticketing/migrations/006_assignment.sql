-- Assignment: agents (people who work tickets), teams of them, queues that route tickets to
-- a team and pick an agent, and each ticket's team, assignee and the queue it waits in.

-- An agent is a user subject (the JWT ``sub``) registered in a workspace. ``working_hours``
-- is a business-hours calendar (as BusinessCalendar.from_dict takes it), null for always.
-- A deactivated agent (``active`` false) keeps its row, so history still names it, but is in
-- no team and can be given no ticket.
CREATE TABLE agents (
    workspace_id     text        NOT NULL,
    id               text        NOT NULL CHECK (length(id) BETWEEN 1 AND 200),
    display_name     text        NOT NULL DEFAULT '',
    skills           text[]      NOT NULL DEFAULT '{}',
    capacity         integer     NOT NULL CHECK (capacity >= 0),
    working_hours    jsonb,
    availability     text        NOT NULL DEFAULT 'offline'
                                 CHECK (availability IN ('available', 'away', 'offline')),
    active           boolean     NOT NULL DEFAULT true,
    -- When a ticket was last given to the agent: ties of load-balanced choice go to the one
    -- who waited longest.
    last_assigned_at timestamptz,
    version          integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE teams (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    name          text        NOT NULL,
    version       integer     NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT teams_workspace_id UNIQUE (workspace_id, id),
    CONSTRAINT teams_name UNIQUE (workspace_id, name)
);

CREATE TABLE team_members (
    workspace_id  text NOT NULL,
    team_id       uuid NOT NULL,
    agent_id      text NOT NULL,
    PRIMARY KEY (workspace_id, team_id, agent_id),
    FOREIGN KEY (workspace_id, team_id) REFERENCES teams (workspace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, agent_id) REFERENCES agents (workspace_id, id)
);
CREATE INDEX team_members_by_agent ON team_members (workspace_id, agent_id);

-- A queue routes the tickets its rules match (the first matching queue by position) to its
-- team, and picks an agent by its strategy. ``rr_cursor`` is the agent round-robin gave the
-- last ticket to; the row is locked while it moves.
CREATE TABLE queues (
    id               uuid        PRIMARY KEY,
    workspace_id     text        NOT NULL,
    name             text        NOT NULL,
    team_id          uuid        NOT NULL,
    strategy         text        NOT NULL CHECK (strategy IN ('round_robin', 'load_balanced')),
    required_skills  text[]      NOT NULL DEFAULT '{}',
    position         integer     NOT NULL DEFAULT 0,
    rules            jsonb       NOT NULL DEFAULT '{}',
    rr_cursor        text,
    version          integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT queues_workspace_id UNIQUE (workspace_id, id),
    CONSTRAINT queues_name UNIQUE (workspace_id, name),
    CONSTRAINT queues_team FOREIGN KEY (workspace_id, team_id) REFERENCES teams (workspace_id, id)
);
CREATE INDEX queues_by_position ON queues (workspace_id, position, id);

-- A ticket's team and assignee (an agent id), the queue that routed it and since when it
-- waits there (kept while assigned, so a ticket put back waits from its first queueing).
ALTER TABLE tickets
    ADD COLUMN team_id   uuid,
    ADD COLUMN assignee  text,
    ADD COLUMN queue_id  uuid,
    ADD COLUMN queued_at timestamptz;
CREATE INDEX tickets_by_assignee ON tickets (workspace_id, assignee, status) WHERE assignee IS NOT NULL;
CREATE INDEX tickets_waiting ON tickets (workspace_id, queue_id, queued_at, id)
    WHERE assignee IS NULL AND queue_id IS NOT NULL;

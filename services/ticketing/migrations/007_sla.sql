-- SLA: business-hours calendars, policies, each ticket's clocks, and the alerts it still owes.

-- A calendar as BusinessCalendar.to_dict() gives it: {"zone", "week", "holidays"}.
CREATE TABLE sla_calendars (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    name          text        NOT NULL,
    definition    jsonb       NOT NULL,
    version       integer     NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sla_calendars_workspace_id UNIQUE (workspace_id, id)
);
CREATE INDEX sla_calendars_order ON sla_calendars (workspace_id, name, id);

-- Targets are whole seconds of business time; empty condition arrays match any value.
CREATE TABLE sla_policies (
    id                      uuid        PRIMARY KEY,
    workspace_id            text        NOT NULL,
    name                    text        NOT NULL,
    position                integer     NOT NULL DEFAULT 0,
    calendar_id             uuid        NOT NULL,
    priorities              text[]      NOT NULL DEFAULT '{}',
    channels                text[]      NOT NULL DEFAULT '{}',
    tiers                   text[]      NOT NULL DEFAULT '{}',
    first_response_seconds  integer,
    next_response_seconds   integer,
    resolution_seconds      integer,
    warning_percent         integer,
    warning_before_seconds  integer,
    version                 integer     NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sla_policies_workspace_id UNIQUE (workspace_id, id),
    -- A calendar in use cannot be deleted (the API answers 409 first).
    CONSTRAINT sla_policies_calendar FOREIGN KEY (workspace_id, calendar_id)
        REFERENCES sla_calendars (workspace_id, id)
);
CREATE INDEX sla_policies_order ON sla_policies (workspace_id, position, id);
CREATE INDEX sla_policies_by_calendar ON sla_policies (workspace_id, calendar_id);

-- The policy a ticket's clocks run under (none matched: no row), as last computed.
CREATE TABLE ticket_sla (
    ticket_id     uuid        PRIMARY KEY REFERENCES tickets (id),
    workspace_id  text        NOT NULL,
    policy_id     uuid        NOT NULL,
    evaluated_at  timestamptz NOT NULL
);
CREATE INDEX ticket_sla_by_policy ON ticket_sla (workspace_id, policy_id);

-- One row per target and cycle of a ticket's clocks, rewritten whenever they are recomputed.
CREATE TABLE ticket_sla_targets (
    ticket_id     uuid        NOT NULL REFERENCES tickets (id),
    workspace_id  text        NOT NULL,
    policy_id     uuid        NOT NULL,
    target        text        NOT NULL
                              CHECK (target IN ('first_response', 'next_response', 'resolution')),
    cycle         integer     NOT NULL,
    goal_seconds  integer     NOT NULL,
    state         text        NOT NULL CHECK (state IN ('running', 'paused', 'stopped')),
    started_at    timestamptz NOT NULL,
    elapsed_ms    bigint      NOT NULL,
    deadline      timestamptz,
    warning_at    timestamptz,
    stopped_at    timestamptz,
    met_at        timestamptz,
    breached_at   timestamptz,
    PRIMARY KEY (ticket_id, target, cycle)
);
CREATE INDEX ticket_sla_targets_by_start ON ticket_sla_targets (workspace_id, started_at);

-- The sla.warning / sla.breached alerts a ticket owes. ``key`` (ticket:target:kind:cycle) is
-- the alert's identity: it fires once (fired_at set in the transaction that adds its event to
-- the outbox), and a fired row is never changed or deleted by a recompute.
CREATE TABLE sla_alerts (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  text        NOT NULL,
    ticket_id     uuid        NOT NULL REFERENCES tickets (id),
    policy_id     uuid        NOT NULL,
    key           text        NOT NULL UNIQUE,
    kind          text        NOT NULL CHECK (kind IN ('warning', 'breached')),
    target        text        NOT NULL,
    cycle         integer     NOT NULL,
    due_at        timestamptz NOT NULL,
    fired_at      timestamptz
);
CREATE INDEX sla_alerts_due ON sla_alerts (due_at) WHERE fired_at IS NULL;
CREATE INDEX sla_alerts_by_ticket ON sla_alerts (ticket_id);

-- Activities: calls, meetings, tasks and notes written by people, and the emails and chats of
-- the interaction stream linked to a contact's open deals. Rotting episodes already announced,
-- and a person's erasures not yet confirmed to contacts.

-- kind: call|meeting|task|note (written over the API) or the channel an interaction came on
-- (email, chat, whatsapp, ...; interaction_id set, one row per open deal of the contact).
-- completed_at: when it was done; a note and an interaction are done when they happen.
-- timeline_at orders a deal's timeline: when it was done, else when it is due, else written.
CREATE TABLE activities (
    id              uuid        PRIMARY KEY,
    workspace_id    text        NOT NULL,
    kind            text        NOT NULL,
    subject         text        NOT NULL DEFAULT '',
    body            text        NOT NULL DEFAULT '',
    due_at          timestamptz,
    owner_id        text,
    deal_id         uuid,
    contact_id      uuid,
    completed_at    timestamptz,
    completed_by    text,
    interaction_id  text,
    direction       text        CHECK (direction IS NULL OR direction IN ('inbound', 'outbound')),
    version         integer     NOT NULL DEFAULT 1,
    created_by      text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    timeline_at     timestamptz GENERATED ALWAYS AS (COALESCE(completed_at, due_at, created_at)) STORED,
    UNIQUE (workspace_id, id),
    FOREIGN KEY (workspace_id, deal_id) REFERENCES deals (workspace_id, id) ON DELETE CASCADE,
    CHECK (deal_id IS NOT NULL OR contact_id IS NOT NULL)
);
-- One activity per interaction and deal: a redelivered interaction adds nothing.
CREATE UNIQUE INDEX activities_per_interaction ON activities (workspace_id, interaction_id, deal_id)
    WHERE interaction_id IS NOT NULL;
CREATE INDEX activities_by_workspace ON activities (workspace_id, id);
CREATE INDEX activities_by_deal ON activities (workspace_id, deal_id, timeline_at, id) WHERE deal_id IS NOT NULL;
CREATE INDEX activities_by_contact ON activities (workspace_id, contact_id, id) WHERE contact_id IS NOT NULL;
CREATE INDEX activities_open_by_owner ON activities (workspace_id, owner_id, due_at) WHERE completed_at IS NULL;

-- The rotting episode of a deal last announced (crm.pipeline.deal.rotting.v1): `since` is the
-- later of its last activity and its entry into the stage when it was announced. A deal whose
-- `since` has moved on (an activity, another stage) starts a new episode; one still at this
-- `since` is not announced again, across restarts and replicas.
CREATE TABLE deal_rotting (
    workspace_id  text        NOT NULL,
    deal_id       uuid        NOT NULL,
    since         timestamptz NOT NULL,
    fired_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, deal_id),
    FOREIGN KEY (workspace_id, deal_id) REFERENCES deals (workspace_id, id) ON DELETE CASCADE
);
-- The rotting scan: open deals by stage.
CREATE INDEX deals_open_by_stage ON deals (workspace_id, stage_id)
    WHERE status = 'open' AND deleted_at IS NULL;

-- Lead scoring: each workspace's model, what rules read (a snapshot of contacts' attributes
-- and the behaviour events seen) and each contact's score with its explanation.

CREATE TABLE lead_scoring_models (
    workspace_id  text        PRIMARY KEY,
    version       integer     NOT NULL,
    model         jsonb       NOT NULL,  -- domain.scoring.model_to_dict
    updated_at    timestamptz NOT NULL DEFAULT now(),
    updated_by    text        NOT NULL DEFAULT ''
);

-- The attributes rules test, from crm.contacts.v1 (contact.created / contact.updated).
CREATE TABLE lead_contact_attributes (
    workspace_id     text        NOT NULL,
    contact_id       uuid        NOT NULL,
    lifecycle_stage  text        NOT NULL DEFAULT '',
    owner_id         text        NOT NULL DEFAULT '',
    tags             text[]      NOT NULL DEFAULT '{}',
    companies        text[]      NOT NULL DEFAULT '{}',
    custom_fields    jsonb       NOT NULL DEFAULT '{}',
    contact_version  integer     NOT NULL DEFAULT 0,  -- an older event never overwrites a newer one
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, contact_id)
);

-- One row per behaviour event (its CloudEvents id), whatever topic it came from.
CREATE TABLE lead_behaviour_events (
    workspace_id  text        NOT NULL,
    event_id      text        NOT NULL,
    contact_id    uuid        NOT NULL,
    kind          text        NOT NULL,
    occurred_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, event_id)
);
CREATE INDEX lead_behaviour_events_contact ON lead_behaviour_events (workspace_id, contact_id, occurred_at);
CREATE INDEX lead_behaviour_events_age ON lead_behaviour_events (occurred_at);

-- Each scored contact's score, as last computed, and the score last published.
CREATE TABLE lead_scores (
    workspace_id     text          NOT NULL,
    contact_id       uuid          NOT NULL,
    score            numeric(14,2) NOT NULL,
    contributions    jsonb         NOT NULL,  -- the explanation, heaviest rule first
    model_version    integer       NOT NULL,
    computed_at      timestamptz   NOT NULL,
    published_score  numeric(14,2) NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, contact_id)
);
-- GET /v1/lead-scores: highest first, keyset by (score, contact_id).
CREATE INDEX lead_scores_rank ON lead_scores (workspace_id, score DESC, contact_id);
CREATE INDEX lead_scores_due ON lead_scores (computed_at);

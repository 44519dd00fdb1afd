-- Pipelines, stages and deals: the core of pipeline. OTHER HELPERS/MIGRATIONS RELY ON THESE
-- TABLES AND COLUMNS (activities, forecasts/analytics, lead scoring): add columns in later
-- migrations, never rename or drop here.
--
-- Money is integer minor units (amount_minor) plus an ISO 4217 currency; a workspace's base
-- currency and dated exchange rates (units of base per unit of the currency) convert for reports.

CREATE TABLE pipelines (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    name          text        NOT NULL,
    position      integer     NOT NULL DEFAULT 0,
    archived      boolean     NOT NULL DEFAULT false,
    version       integer     NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, id)
);
CREATE INDEX pipelines_by_workspace ON pipelines (workspace_id, position, id);

-- Stages in board order (position); kind open|won|lost, won/lost being terminal. A pipeline
-- has at most one (unarchived) won and one lost stage. rotting_days: an open deal with no
-- activity for that many days is rotting (NULL: never).
CREATE TABLE stages (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    pipeline_id   uuid        NOT NULL,
    name          text        NOT NULL,
    position      integer     NOT NULL,
    probability   smallint    NOT NULL CHECK (probability BETWEEN 0 AND 100),
    kind          text        NOT NULL DEFAULT 'open' CHECK (kind IN ('open', 'won', 'lost')),
    rotting_days  integer     CHECK (rotting_days IS NULL OR rotting_days > 0),
    archived      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, id),
    FOREIGN KEY (workspace_id, pipeline_id) REFERENCES pipelines (workspace_id, id)
);
CREATE INDEX stages_by_pipeline ON stages (workspace_id, pipeline_id, position);
CREATE UNIQUE INDEX stages_one_terminal_kind ON stages (pipeline_id, kind)
    WHERE kind IN ('won', 'lost') AND NOT archived;

-- Why deals are won or lost, per workspace (kind says which).
CREATE TABLE close_reasons (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('won', 'lost')),
    label         text        NOT NULL,
    archived      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, id)
);

-- The currency reports convert into; a workspace without a row reports in EUR.
CREATE TABLE workspace_currency (
    workspace_id   text        PRIMARY KEY,
    base_currency  char(3)     NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- rate: units of the base currency per unit of `currency`, valid from `valid_on` until the
-- next dated rate. Conversion uses the latest rate on or before the date asked for.
CREATE TABLE exchange_rates (
    workspace_id  text        NOT NULL,
    currency      char(3)     NOT NULL,
    valid_on      date        NOT NULL,
    rate          numeric(24, 12) NOT NULL CHECK (rate > 0),
    PRIMARY KEY (workspace_id, currency, valid_on)
);

CREATE TABLE deals (
    id                   uuid        PRIMARY KEY,
    workspace_id         text        NOT NULL,
    pipeline_id          uuid        NOT NULL,
    stage_id             uuid        NOT NULL,
    title                text        NOT NULL,
    amount_minor         bigint      NOT NULL DEFAULT 0 CHECK (amount_minor >= 0),
    currency             char(3)     NOT NULL,
    expected_close_date  date,
    owner_id             text,
    contact_id           uuid,
    company_id           uuid,
    status               text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'won', 'lost')),
    close_reason_id      uuid,
    close_note           text,
    closed_at            timestamptz,
    stage_entered_at     timestamptz NOT NULL DEFAULT now(),
    last_activity_at     timestamptz,
    custom_fields        jsonb       NOT NULL DEFAULT '{}',
    tags                 text[]      NOT NULL DEFAULT '{}',
    version              integer     NOT NULL DEFAULT 1,
    deleted_at           timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, id),
    FOREIGN KEY (workspace_id, pipeline_id) REFERENCES pipelines (workspace_id, id),
    FOREIGN KEY (workspace_id, stage_id) REFERENCES stages (workspace_id, id),
    FOREIGN KEY (workspace_id, close_reason_id) REFERENCES close_reasons (workspace_id, id),
    CHECK ((status = 'open') = (closed_at IS NULL))
);
CREATE INDEX deals_by_stage ON deals (workspace_id, stage_id, id) WHERE deleted_at IS NULL;
CREATE INDEX deals_by_pipeline ON deals (workspace_id, pipeline_id, id) WHERE deleted_at IS NULL;
CREATE INDEX deals_by_contact ON deals (workspace_id, contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX deals_by_company ON deals (workspace_id, company_id) WHERE company_id IS NOT NULL;
CREATE INDEX deals_by_owner ON deals (workspace_id, owner_id, id) WHERE deleted_at IS NULL;

-- Other people on a deal besides its primary contact (role is free text: "champion", ...).
CREATE TABLE deal_participants (
    workspace_id  text NOT NULL,
    deal_id       uuid NOT NULL,
    contact_id    uuid NOT NULL,
    role          text NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_id, deal_id, contact_id),
    FOREIGN KEY (workspace_id, deal_id) REFERENCES deals (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX deal_participants_by_contact ON deal_participants (workspace_id, contact_id);

-- Products on a deal, in the deal's currency: total = quantity * unit_price_minor - discount_minor.
CREATE TABLE deal_line_items (
    workspace_id      text    NOT NULL,
    deal_id           uuid    NOT NULL,
    position          integer NOT NULL,
    product           text    NOT NULL,
    quantity          integer NOT NULL CHECK (quantity > 0),
    unit_price_minor  bigint  NOT NULL CHECK (unit_price_minor >= 0),
    discount_minor    bigint  NOT NULL DEFAULT 0 CHECK (discount_minor >= 0),
    PRIMARY KEY (workspace_id, deal_id, position),
    FOREIGN KEY (workspace_id, deal_id) REFERENCES deals (workspace_id, id) ON DELETE CASCADE
);

-- Every stage a deal entered: from (NULL when created), to, when, who, and how long it sat
-- in the stage it left (seconds; NULL when created).
CREATE TABLE deal_stage_changes (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id      text        NOT NULL,
    deal_id           uuid        NOT NULL,
    from_stage_id     uuid,
    to_stage_id       uuid        NOT NULL,
    at                timestamptz NOT NULL DEFAULT now(),
    actor             text        NOT NULL,
    seconds_in_from   bigint,
    FOREIGN KEY (workspace_id, deal_id) REFERENCES deals (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX deal_stage_changes_by_deal ON deal_stage_changes (workspace_id, deal_id, id);
CREATE INDEX deal_stage_changes_by_time ON deal_stage_changes (workspace_id, at);

-- Custom fields of deals (the rules are crmkit.fields'); values live in deals.custom_fields.
CREATE TABLE deal_field_definitions (
    workspace_id  text        NOT NULL,
    key           text        NOT NULL,
    label         text        NOT NULL,
    type          text        NOT NULL,
    options       text[]      NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, key)
);

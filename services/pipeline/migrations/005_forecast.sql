-- Forecasts and analytics: a deal's forecast category, sales teams for grouping, weekly
-- snapshots of the forecast, and the indexes the aggregates read at 1M deals.

-- pipeline | best_case | commit | omitted (see domain/forecast.py for what each counts in).
ALTER TABLE deals ADD COLUMN forecast_category text NOT NULL DEFAULT 'pipeline'
    CHECK (forecast_category IN ('pipeline', 'best_case', 'commit', 'omitted'));

-- The forecast reads open deals by expected close date and won deals by the day they were won;
-- each partial index carries every column the aggregate needs, so that it is an index-only
-- scan of just the deals in range (no heap visits once the table is vacuumed).
CREATE INDEX deals_forecast_open ON deals (workspace_id, expected_close_date)
    INCLUDE (pipeline_id, stage_id, owner_id, currency, amount_minor, forecast_category)
    WHERE status = 'open' AND deleted_at IS NULL;
-- Won deals by close time for the forecast; won and lost ones (status IN (...)) for win rates.
CREATE INDEX deals_forecast_closed ON deals (workspace_id, status, closed_at)
    INCLUDE (pipeline_id, owner_id, currency, amount_minor, created_at)
    WHERE status <> 'open' AND deleted_at IS NULL;
-- The funnel reads the stage entries of a range by stage.
CREATE INDEX deal_stage_changes_by_stage ON deal_stage_changes (workspace_id, to_stage_id, at)
    INCLUDE (deal_id);
CREATE INDEX deal_stage_changes_from_stage ON deal_stage_changes (workspace_id, from_stage_id, at)
    INCLUDE (seconds_in_from) WHERE from_stage_id IS NOT NULL;

-- Sales teams group owners (subjects, as deals.owner_id) for the forecast by team. An owner is
-- in at most one team, so that the teams' figures add up to the whole.
CREATE TABLE sales_teams (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    name          text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, id),
    UNIQUE (workspace_id, name)
);

CREATE TABLE sales_team_members (
    workspace_id  text NOT NULL,
    owner_id      text NOT NULL,
    team_id       uuid NOT NULL,
    PRIMARY KEY (workspace_id, owner_id),
    FOREIGN KEY (workspace_id, team_id) REFERENCES sales_teams (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX sales_team_members_by_team ON sales_team_members (workspace_id, team_id);

-- A forecast as it stood when taken: the request it answered and one line per (period, group).
-- `slot` is the week (or day) a scheduled snapshot belongs to: one scheduled snapshot per
-- workspace and slot, whatever restarts or replicas (manual ones have none).
CREATE TABLE forecast_snapshots (
    id             uuid        PRIMARY KEY,
    workspace_id   text        NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    as_of          date        NOT NULL,
    slot           date,
    taken_by       text        NOT NULL,
    pipeline_id    uuid,
    period         text        NOT NULL CHECK (period IN ('month', 'quarter')),
    group_by       text        CHECK (group_by IN ('owner', 'team')),
    range_start    date        NOT NULL,
    range_end      date        NOT NULL,
    base_currency  char(3)     NOT NULL,
    missing_rates  text[]      NOT NULL DEFAULT '{}',
    UNIQUE (workspace_id, id)
);
CREATE INDEX forecast_snapshots_by_time ON forecast_snapshots (workspace_id, taken_at, id);
CREATE UNIQUE INDEX forecast_snapshots_one_per_slot ON forecast_snapshots (workspace_id, slot)
    WHERE slot IS NOT NULL;

CREATE TABLE forecast_snapshot_lines (
    workspace_id  text    NOT NULL,
    snapshot_id   uuid    NOT NULL,
    period_start  date    NOT NULL,
    group_key     text,
    weighted      bigint  NOT NULL,
    commit        bigint  NOT NULL,
    best_case     bigint  NOT NULL,
    pipeline      bigint  NOT NULL,
    won           bigint  NOT NULL,
    open_count    integer NOT NULL,
    won_count     integer NOT NULL,
    FOREIGN KEY (workspace_id, snapshot_id) REFERENCES forecast_snapshots (workspace_id, id)
        ON DELETE CASCADE
);
CREATE INDEX forecast_snapshot_lines_by_snapshot ON forecast_snapshot_lines (workspace_id, snapshot_id);

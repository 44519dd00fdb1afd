"""Forecast and analytics SQL: the aggregates (GROUP BY in PostgreSQL, integers only), sales
teams and snapshots. Every query is scoped by workspace.

The forecast reads two partial covering indexes (migrations/005_forecast.sql): open deals by
expected close date and closed deals by close time, so at 1M deals it scans only the deals in
range, from the index alone. Amounts are summed per deal currency; the rate in force on the
as-of date is joined to each currency's sums (a LEFT JOIN: NULL means no rate) and the domain
converts each sum once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg

from crm_pipeline.domain.forecast import CurrencySums, ForecastLine, ForecastRange, Grouping, SalesTeam
from crm_pipeline.domain.money import DEFAULT_BASE_CURRENCY

_GROUP = {None: "NULL::text", Grouping.OWNER: "d.owner_id", Grouping.TEAM: "m.team_id::text"}
_TEAM_JOIN = (" LEFT JOIN sales_team_members m ON m.workspace_id = d.workspace_id"
              " AND m.owner_id = d.owner_id")


def forecast_query(group_by: Grouping | None, pipeline: bool) -> str:
    """The forecast's SQL. Parameters: $1 workspace, $2 'month'|'quarter', $3 range start,
    $4 range end (dates), $5 time zone, $6 as-of date, [$7 pipeline id]."""
    group = _GROUP[group_by]
    join = _TEAM_JOIN if group_by is Grouping.TEAM else ""
    in_pipeline = " AND d.pipeline_id = $7" if pipeline else ""
    return (
        "WITH picked AS ("  # noqa: S608 - only our own fragments are interpolated
        " SELECT date_trunc($2, d.expected_close_date::timestamp)::date AS period_start,"
        f" {group} AS group_key,"
        " d.currency, d.amount_minor, d.amount_minor * s.probability AS weighted_raw,"
        " d.forecast_category AS category, false AS won"
        f" FROM deals d JOIN stages s ON s.workspace_id = d.workspace_id AND s.id = d.stage_id{join}"
        " WHERE d.workspace_id = $1 AND d.status = 'open' AND d.deleted_at IS NULL"
        " AND d.expected_close_date >= $3 AND d.expected_close_date < $4"
        f" AND d.forecast_category <> 'omitted'{in_pipeline}"
        " UNION ALL"
        f" SELECT date_trunc($2, d.closed_at AT TIME ZONE $5)::date, {group},"
        " d.currency, d.amount_minor, 0, 'won', true"
        f" FROM deals d{join}"
        " WHERE d.workspace_id = $1 AND d.status = 'won' AND d.deleted_at IS NULL"
        " AND d.closed_at >= ($3::date::timestamp AT TIME ZONE $5)"
        f" AND d.closed_at < ($4::date::timestamp AT TIME ZONE $5){in_pipeline}"
        "), sums AS ("
        " SELECT period_start, group_key, currency,"
        " coalesce(sum(amount_minor) FILTER (WHERE NOT won), 0) AS open_amount,"
        " coalesce(sum(weighted_raw) FILTER (WHERE NOT won), 0) AS open_weighted_raw,"
        " coalesce(sum(amount_minor) FILTER (WHERE category = 'commit'), 0) AS commit_open,"
        " coalesce(sum(amount_minor) FILTER (WHERE category = 'best_case'), 0) AS best_case_open,"
        " coalesce(sum(amount_minor) FILTER (WHERE won), 0) AS won,"
        " count(*) FILTER (WHERE NOT won) AS open_count, count(*) FILTER (WHERE won) AS won_count"
        " FROM picked GROUP BY period_start, group_key, currency"
        "), rates AS ("
        " SELECT DISTINCT ON (currency) currency, rate FROM exchange_rates"
        " WHERE workspace_id = $1 AND valid_on <= $6 ORDER BY currency, valid_on DESC"
        ")"
        " SELECT sums.*, rates.rate FROM sums LEFT JOIN rates ON rates.currency = sums.currency"
    )


@dataclass(frozen=True)
class FunnelStage:
    stage_id: UUID
    name: str
    position: int
    kind: str
    archived: bool
    entered: int
    moved_on: int
    won: int
    left: int
    average_seconds: float | None
    median_seconds: float | None


_FUNNEL = (
    "WITH st AS (SELECT id, name, position, kind, archived FROM stages"
    " WHERE workspace_id = $1 AND pipeline_id = $2),"
    " entries AS (SELECT c.id, c.deal_id, c.to_stage_id AS stage_id FROM deal_stage_changes c"
    " JOIN st ON st.id = c.to_stage_id WHERE c.workspace_id = $1 AND c.at >= $3 AND c.at < $4),"
    " entered AS (SELECT stage_id, count(DISTINCT deal_id) AS n FROM entries GROUP BY stage_id),"
    # moved on: a later change of the same deal into a stage further along (or won), never lost
    " moved AS (SELECT e.stage_id, count(DISTINCT e.deal_id) AS n FROM entries e"
    " JOIN st cur ON cur.id = e.stage_id"
    " WHERE EXISTS (SELECT 1 FROM deal_stage_changes n JOIN st nxt ON nxt.id = n.to_stage_id"
    " WHERE n.workspace_id = $1 AND n.deal_id = e.deal_id AND n.id > e.id AND nxt.kind <> 'lost'"
    " AND (nxt.position > cur.position OR nxt.kind = 'won') AND cur.kind = 'open')"
    " GROUP BY e.stage_id),"
    " won AS (SELECT e.stage_id, count(DISTINCT e.deal_id) AS n FROM entries e"
    " JOIN deals d ON d.workspace_id = $1 AND d.id = e.deal_id"
    " WHERE d.status = 'won' AND d.deleted_at IS NULL GROUP BY e.stage_id),"
    " times AS (SELECT c.from_stage_id AS stage_id, count(*) AS n,"
    " avg(c.seconds_in_from)::float8 AS average,"
    " percentile_cont(0.5) WITHIN GROUP (ORDER BY c.seconds_in_from) AS median"
    " FROM deal_stage_changes c JOIN st ON st.id = c.from_stage_id"
    " WHERE c.workspace_id = $1 AND c.at >= $3 AND c.at < $4 AND c.seconds_in_from IS NOT NULL"
    " GROUP BY c.from_stage_id)"
    " SELECT st.id, st.name, st.position, st.kind, st.archived, coalesce(entered.n, 0) AS entered,"
    " coalesce(moved.n, 0) AS moved_on, coalesce(won.n, 0) AS won, coalesce(times.n, 0) AS left_count,"
    " times.average, times.median"
    " FROM st LEFT JOIN entered ON entered.stage_id = st.id LEFT JOIN moved ON moved.stage_id = st.id"
    " LEFT JOIN won ON won.stage_id = st.id LEFT JOIN times ON times.stage_id = st.id"
    " WHERE NOT st.archived OR entered.n > 0 ORDER BY st.position, st.id"
)


@dataclass(frozen=True)
class WinRateRow:
    group: str | None
    total: bool  # the row over every group
    won: int
    lost: int
    average_cycle_days: float | None


def _snapshot_line(row: Any) -> ForecastLine:
    return ForecastLine(row["period_start"], row["group_key"], row["weighted"], row["commit"],
                        row["best_case"], row["pipeline"], row["won"], row["open_count"], row["won_count"])


@dataclass(frozen=True)
class Snapshot:
    id: UUID
    taken_at: datetime
    as_of: date
    slot: date | None
    taken_by: str
    pipeline_id: UUID | None
    period: str
    group_by: str | None
    range_start: date
    range_end: date
    base_currency: str
    missing_rates: list[str]


_SNAPSHOT = ("id, taken_at, as_of, slot, taken_by, pipeline_id, period, group_by, range_start, range_end,"
             " base_currency, missing_rates")


class ForecastStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # --- reading deals ---------------------------------------------------------------------

    async def base_currency(self, workspace_id: str) -> str:
        found = await self.conn.fetchval(
            "SELECT base_currency FROM workspace_currency WHERE workspace_id = $1", workspace_id)
        return str(found).strip() if found else DEFAULT_BASE_CURRENCY

    async def pipeline_exists(self, workspace_id: str, pipeline_id: UUID) -> bool:
        return bool(await self.conn.fetchval(
            "SELECT 1 FROM pipelines WHERE workspace_id = $1 AND id = $2", workspace_id, pipeline_id))

    async def forecast_sums(self, workspace_id: str, span: ForecastRange, group_by: Grouping | None,
                            pipeline_id: UUID | None, time_zone: str, as_of: date) -> list[CurrencySums]:
        args: list[Any] = [workspace_id, span.period.value, span.start, span.end, time_zone, as_of]
        if pipeline_id is not None:
            args.append(pipeline_id)
        rows = await self.conn.fetch(forecast_query(group_by, pipeline_id is not None), *args)
        return [CurrencySums(
            period_start=r["period_start"], group=r["group_key"], currency=r["currency"].strip(),
            rate=r["rate"], open_amount=int(r["open_amount"]), open_weighted_raw=int(r["open_weighted_raw"]),
            commit_open=int(r["commit_open"]), best_case_open=int(r["best_case_open"]), won=int(r["won"]),
            open_count=r["open_count"], won_count=r["won_count"]) for r in rows]

    async def funnel(self, workspace_id: str, pipeline_id: UUID, start: datetime, end: datetime
                     ) -> list[FunnelStage]:
        rows = await self.conn.fetch(_FUNNEL, workspace_id, pipeline_id, start, end)
        return [FunnelStage(r["id"], r["name"], r["position"], r["kind"], r["archived"], r["entered"],
                            r["moved_on"], r["won"], r["left_count"], r["average"], r["median"])
                for r in rows]

    async def win_rate(self, workspace_id: str, start: datetime, end: datetime, pipeline_id: UUID | None,
                       by_owner: bool) -> list[WinRateRow]:
        args: list[Any] = [workspace_id, start, end]
        in_pipeline = ""
        if pipeline_id is not None:
            args.append(pipeline_id)
            in_pipeline = " AND pipeline_id = $4"
        group = ("owner_id, grouping(owner_id) = 1 AS total" if by_owner
                 else "NULL::text AS owner_id, true AS total")
        sets = " GROUP BY GROUPING SETS ((), (owner_id))" if by_owner else ""
        rows = await self.conn.fetch(
            f"SELECT {group},"  # noqa: S608 - no caller text in it
            " count(*) FILTER (WHERE status = 'won') AS won, count(*) FILTER (WHERE status = 'lost') AS lost,"
            " (avg(extract(epoch FROM closed_at - created_at)) FILTER (WHERE status = 'won'))::float8"
            " / 86400 AS cycle_days"
            " FROM deals WHERE workspace_id = $1 AND status IN ('won', 'lost') AND deleted_at IS NULL"
            f" AND closed_at >= $2 AND closed_at < $3{in_pipeline}{sets}"
            " ORDER BY total DESC, owner_id NULLS FIRST", *args)
        return [WinRateRow(r["owner_id"], r["total"], r["won"], r["lost"], r["cycle_days"]) for r in rows]

    # --- sales teams -------------------------------------------------------------------------

    async def teams(self, workspace_id: str, team_id: UUID | None = None) -> list[SalesTeam]:
        rows = await self.conn.fetch(
            "SELECT t.id, t.name, coalesce(array_agg(m.owner_id ORDER BY m.owner_id)"
            " FILTER (WHERE m.owner_id IS NOT NULL), '{}') AS members"
            " FROM sales_teams t LEFT JOIN sales_team_members m"
            " ON m.workspace_id = t.workspace_id AND m.team_id = t.id"
            " WHERE t.workspace_id = $1 AND ($2::uuid IS NULL OR t.id = $2)"
            " GROUP BY t.id, t.name ORDER BY t.name, t.id", workspace_id, team_id)
        return [SalesTeam(r["id"], r["name"], tuple(r["members"])) for r in rows]

    async def name_taken(self, workspace_id: str, name: str, other_than: UUID | None) -> bool:
        return bool(await self.conn.fetchval(
            "SELECT 1 FROM sales_teams WHERE workspace_id = $1 AND name = $2"
            " AND ($3::uuid IS NULL OR id <> $3)", workspace_id, name, other_than))

    async def members_elsewhere(self, workspace_id: str, members: Sequence[str], team_id: UUID | None
                                ) -> list[str]:
        """The ``members`` already in another team than ``team_id``."""
        rows = await self.conn.fetch(
            "SELECT owner_id FROM sales_team_members WHERE workspace_id = $1"
            " AND owner_id = ANY($2::text[]) AND ($3::uuid IS NULL OR team_id <> $3) ORDER BY owner_id",
            workspace_id, list(members), team_id)
        return [r["owner_id"] for r in rows]

    async def save_team(self, workspace_id: str, team_id: UUID, name: str, members: Sequence[str],
                        create: bool) -> bool:
        """Insert or rename the team and replace its members; False when there is no such team."""
        if create:
            await self.conn.execute("INSERT INTO sales_teams (id, workspace_id, name) VALUES ($1, $2, $3)",
                                    team_id, workspace_id, name)
        elif await self.conn.fetchval(
                "UPDATE sales_teams SET name = $3, updated_at = now() WHERE workspace_id = $1 AND id = $2"
                " RETURNING 1", workspace_id, team_id, name) is None:
            return False
        await self.conn.execute("DELETE FROM sales_team_members WHERE workspace_id = $1 AND team_id = $2",
                                workspace_id, team_id)
        await self.conn.executemany(
            "INSERT INTO sales_team_members (workspace_id, owner_id, team_id) VALUES ($1, $2, $3)",
            [(workspace_id, m, team_id) for m in members])
        return True

    async def delete_team(self, workspace_id: str, team_id: UUID) -> bool:
        return await self.conn.fetchval(
            "DELETE FROM sales_teams WHERE workspace_id = $1 AND id = $2 RETURNING 1",
            workspace_id, team_id) is not None

    # --- snapshots ---------------------------------------------------------------------------

    async def add_snapshot(self, workspace_id: str, snapshot: Snapshot, lines: Sequence[ForecastLine]
                           ) -> bool:
        """Store the snapshot and its lines; False (nothing written) when its slot is taken."""
        inserted = await self.conn.fetchval(
            f"INSERT INTO forecast_snapshots (workspace_id, {_SNAPSHOT})"  # noqa: S608
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            " ON CONFLICT (workspace_id, slot) WHERE slot IS NOT NULL DO NOTHING RETURNING 1",
            workspace_id, snapshot.id, snapshot.taken_at, snapshot.as_of, snapshot.slot, snapshot.taken_by,
            snapshot.pipeline_id, snapshot.period, snapshot.group_by, snapshot.range_start,
            snapshot.range_end, snapshot.base_currency, snapshot.missing_rates)
        if inserted is None:
            return False
        await self.conn.copy_records_to_table(
            "forecast_snapshot_lines",
            records=[(workspace_id, snapshot.id, x.period_start, x.group, x.weighted, x.commit, x.best_case,
                      x.pipeline, x.won, x.open_count, x.won_count) for x in lines],
            columns=("workspace_id", "snapshot_id", "period_start", "group_key", "weighted", "commit",
                     "best_case", "pipeline", "won", "open_count", "won_count"))
        return True

    async def snapshots(self, workspace_id: str, start: datetime, end: datetime, limit: int
                        ) -> list[Snapshot]:
        rows = await self.conn.fetch(
            f"SELECT {_SNAPSHOT} FROM forecast_snapshots WHERE workspace_id = $1"  # noqa: S608
            " AND taken_at >= $2 AND taken_at < $3 ORDER BY taken_at DESC, id DESC LIMIT $4",
            workspace_id, start, end, limit)
        return [Snapshot(**dict(r)) for r in rows]

    async def snapshot(self, workspace_id: str, snapshot_id: UUID
                       ) -> tuple[Snapshot, list[ForecastLine]] | None:
        row = await self.conn.fetchrow(
            f"SELECT {_SNAPSHOT} FROM forecast_snapshots WHERE workspace_id = $1 AND id = $2",  # noqa: S608
            workspace_id, snapshot_id)
        if row is None:
            return None
        lines = await self.conn.fetch(
            "SELECT * FROM forecast_snapshot_lines WHERE workspace_id = $1 AND snapshot_id = $2"
            " ORDER BY period_start, group_key NULLS FIRST", workspace_id, snapshot_id)
        return Snapshot(**dict(row)), [_snapshot_line(r) for r in lines]

    async def workspaces_with_pipelines(self) -> list[str]:
        """Every workspace that has a pipeline: those a scheduled snapshot is taken for."""
        return [r["workspace_id"] for r in await self.conn.fetch(
            "SELECT DISTINCT workspace_id FROM pipelines ORDER BY workspace_id")]

    async def slot_taken(self, workspace_id: str, slot: date) -> bool:
        return bool(await self.conn.fetchval(
            "SELECT 1 FROM forecast_snapshots WHERE workspace_id = $1 AND slot = $2", workspace_id, slot))

    async def set_category(self, workspace_id: str, deal_id: UUID, category: str) -> int | None:
        """Set a deal's forecast category; its new version, or None when there is no such deal."""
        found = await self.conn.fetchval(
            "UPDATE deals SET forecast_category = $3, version = version + 1, updated_at = now()"
            " WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING version",
            workspace_id, deal_id, category)
        return int(found) if found is not None else None

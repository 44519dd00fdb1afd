"""Forecast, analytics and sales teams over HTTP. Reading needs `pipeline:read`; sales teams and
a deal's forecast category are written with `pipeline:admin` and `pipeline:write`. Amounts are
integer minor units of the workspace's base currency; dates are the workspace's days."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_pipeline.domain.forecast import ForecastLine, LineChange, Period, SalesTeam, period_label
from crm_pipeline.service.forecast import Forecasts
from crm_pipeline.service.snapshots import Snapshots
from crm_pipeline.store.forecast import Snapshot
from crmkit.auth import Principal, require
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["forecast"])
Reader = Annotated[Principal, Depends(require("pipeline:read"))]
Writer = Annotated[Principal, Depends(require("pipeline:write"))]
Admin = Annotated[Principal, Depends(require("pipeline:admin"))]
Service = Annotated[Forecasts, Depends(state("forecasts", Forecasts))]
SnapshotService = Annotated[Snapshots, Depends(state("snapshots", Snapshots))]
FIGURES = ("weighted", "commit", "best_case", "pipeline", "won")
From = Annotated[date | None, Query(alias="from")]
To = Annotated[date | None, Query(alias="to")]


class LineOut(BaseModel):
    period: str
    period_start: date
    group: str | None
    weighted: int
    commit: int
    best_case: int
    pipeline: int
    won: int
    open_deals: int
    won_deals: int

    @classmethod
    def of(cls, line: ForecastLine, period: str) -> LineOut:
        return cls(period=period_label(line.period_start, Period(period)), period_start=line.period_start,
                   group=line.group, weighted=line.weighted, commit=line.commit, best_case=line.best_case,
                   pipeline=line.pipeline, won=line.won, open_deals=line.open_count, won_deals=line.won_count)


class ForecastOut(BaseModel):
    as_of: date
    currency: str
    period: str
    start: date
    end: date
    group_by: str | None
    pipeline_id: UUID | None
    missing_rates: list[str]
    lines: list[LineOut]


@router.get("/forecast", response_model=ForecastOut)
async def forecast(caller: Reader, forecasts: Service, first: From = None, last: To = None,
                   period: str = "quarter", group_by: str | None = None, pipeline_id: UUID | None = None
                   ) -> ForecastOut:
    """Per period (from the one holding `from` to the one holding `to`) and owner or team:
    weighted (Σ amount x stage probability / 100 over open deals), commit (open deals marked
    commit + deals won in the period), best case (commit + open best_case), pipeline (open deals
    not omitted) and won. Currencies with no rate on `as_of` are left out and listed in
    `missing_rates`."""
    found = await forecasts.forecast(caller.workspace_id, period=period, first=first, last=last,
                                     group_by=group_by, pipeline_id=pipeline_id)
    return ForecastOut(as_of=found.as_of, currency=found.base_currency, period=found.span.period.value,
                       start=found.span.start, end=found.span.end,
                       group_by=found.group_by.value if found.group_by else None,
                       pipeline_id=found.pipeline_id, missing_rates=found.missing_rates,
                       lines=[LineOut.of(x, found.span.period.value) for x in found.lines])


class FunnelStageOut(BaseModel):
    stage_id: UUID
    name: str
    kind: str
    archived: bool
    entered: int
    moved_on: int
    won: int
    conversion_to_next: float | None
    conversion_to_won: float | None
    exits: int
    average_seconds_in_stage: float | None
    median_seconds_in_stage: float | None


class FunnelOut(BaseModel):
    pipeline_id: UUID
    start: date
    end: date
    stages: list[FunnelStageOut]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@router.get("/analytics/funnel", response_model=FunnelOut)
async def funnel(caller: Reader, forecasts: Service, pipeline_id: UUID, first: From = None,
                 last: To = None) -> FunnelOut:
    """Per stage, over the deals that entered it between `from` and `to` (default: 90 days to
    today): how many moved on to a later stage (or won) and how many are won now, as counts and
    rates; and the time spent in the stage by the deals that left it in the range."""
    span, stages = await forecasts.funnel(caller.workspace_id, pipeline_id, first, last)
    return FunnelOut(pipeline_id=pipeline_id, start=span.first, end=span.last, stages=[FunnelStageOut(
        stage_id=s.stage_id, name=s.name, kind=s.kind, archived=s.archived, entered=s.entered,
        moved_on=s.moved_on, won=s.won, conversion_to_next=_rate(s.moved_on, s.entered),
        conversion_to_won=_rate(s.won, s.entered), exits=s.left,
        average_seconds_in_stage=_seconds(s.average_seconds),
        median_seconds_in_stage=_seconds(s.median_seconds)) for s in stages])


class WinRateRowOut(BaseModel):
    owner_id: str | None
    won: int
    lost: int
    win_rate: float | None
    average_cycle_days: float | None


class WinRateOut(BaseModel):
    start: date
    end: date
    overall: WinRateRowOut
    by_owner: list[WinRateRowOut]


@router.get("/analytics/win-rate", response_model=WinRateOut)
async def win_rate(caller: Reader, forecasts: Service, first: From = None, last: To = None,
                   pipeline_id: UUID | None = None, group_by: str | None = None) -> WinRateOut:
    """Among deals closed between `from` and `to`: won / (won + lost), and the average days
    from creation to won."""
    span, rows = await forecasts.win_rate(caller.workspace_id, pipeline_id, first, last, group_by)
    out = [WinRateRowOut(owner_id=r.group, won=r.won, lost=r.lost, win_rate=_rate(r.won, r.won + r.lost),
                         average_cycle_days=None if r.average_cycle_days is None
                         else round(r.average_cycle_days, 2)) for r in rows]
    totals = [o for o, r in zip(out, rows, strict=True) if r.total]
    overall = totals[0] if totals else WinRateRowOut(owner_id=None, won=0, lost=0, win_rate=None,
                                                     average_cycle_days=None)
    return WinRateOut(start=span.first, end=span.last, overall=overall,
                      by_owner=[o for o, r in zip(out, rows, strict=True) if not r.total])


# --- snapshots ---------------------------------------------------------------------------------

class SnapshotOut(BaseModel):
    id: UUID
    taken_at: datetime
    as_of: date
    scheduled: bool
    taken_by: str
    pipeline_id: UUID | None
    period: str
    group_by: str | None
    start: date
    end: date
    currency: str
    missing_rates: list[str]
    lines: list[LineOut] | None = None

    @classmethod
    def of(cls, snapshot: Snapshot, lines: list[ForecastLine] | None = None) -> SnapshotOut:
        return cls(id=snapshot.id, taken_at=snapshot.taken_at, as_of=snapshot.as_of,
                   scheduled=snapshot.slot is not None, taken_by=snapshot.taken_by,
                   pipeline_id=snapshot.pipeline_id, period=snapshot.period, group_by=snapshot.group_by,
                   start=snapshot.range_start, end=snapshot.range_end, currency=snapshot.base_currency,
                   missing_rates=snapshot.missing_rates,
                   lines=None if lines is None else [LineOut.of(x, snapshot.period) for x in lines])


class SnapshotIn(BaseModel):
    period: str = "quarter"
    group_by: str | None = "owner"
    pipeline_id: UUID | None = None
    from_: date | None = Field(None, alias="from")
    to: date | None = None

    model_config = ConfigDict(populate_by_name=True, extra="forbid")


@router.post("/forecast/snapshots", response_model=SnapshotOut, status_code=201)
async def take_snapshot(caller: Reader, snapshots: SnapshotService,
                        body: SnapshotIn | None = None) -> SnapshotOut:
    """Take a snapshot of the forecast now (body: `period`, `group_by`, `pipeline_id`, `from`,
    `to`, as `GET /v1/forecast`; by default the quarters by owner)."""
    fields = body or SnapshotIn()
    taken = await snapshots.take(caller.workspace_id, caller.subject, period=fields.period,
                                 first=fields.from_, last=fields.to, group_by=fields.group_by,
                                 pipeline_id=fields.pipeline_id)
    assert taken is not None  # only a scheduled snapshot (with a slot) can be refused
    return SnapshotOut.of(*taken)


@router.get("/forecast/snapshots", response_model=list[SnapshotOut])
async def list_snapshots(caller: Reader, snapshots: SnapshotService, first: From = None,
                         last: To = None) -> list[SnapshotOut]:
    """Snapshots taken between `from` and `to` (default: the last 90 days), newest first, at
    most 200, without their lines."""
    return [SnapshotOut.of(s) for s in await snapshots.listed(caller.workspace_id, first, last)]


@router.get("/forecast/snapshots/{snapshot_id}", response_model=SnapshotOut)
async def get_snapshot(caller: Reader, snapshots: SnapshotService, snapshot_id: UUID) -> SnapshotOut:
    return SnapshotOut.of(*await snapshots.get(caller.workspace_id, snapshot_id))


class ChangeOut(BaseModel):
    period: str
    period_start: date
    group: str | None
    a: LineOut | None
    b: LineOut | None
    weighted: int
    commit: int
    best_case: int
    pipeline: int
    won: int

    @classmethod
    def of(cls, change: LineChange, period: str) -> ChangeOut:
        return cls(period=period_label(change.period_start, Period(period)), period_start=change.period_start,
                   group=change.group, a=change.before and LineOut.of(change.before, period),
                   b=change.after and LineOut.of(change.after, period),
                   **{name: change.delta(name) for name in FIGURES})


class CompareOut(BaseModel):
    a: SnapshotOut
    b: SnapshotOut
    changes: list[ChangeOut]


@router.get("/forecast/compare", response_model=CompareOut)
async def compare(caller: Reader, snapshots: SnapshotService, a: UUID, b: UUID) -> CompareOut:
    """Per period and group, each snapshot's figures and the change from `a` to `b` (b - a)."""
    found = await snapshots.compare(caller.workspace_id, a, b)
    return CompareOut(a=SnapshotOut.of(found.a), b=SnapshotOut.of(found.b),
                      changes=[ChangeOut.of(c, found.a.period) for c in found.changes])


# --- forecast category and sales teams -----------------------------------------------------------

class CategoryIn(BaseModel):
    forecast_category: str


class CategoryOut(BaseModel):
    deal_id: UUID
    forecast_category: str
    version: int


@router.put("/deals/{deal_id}/forecast-category", response_model=CategoryOut)
async def set_category(caller: Writer, forecasts: Service, deal_id: UUID, body: CategoryIn,
                       response: Response) -> CategoryOut:
    """Mark a deal pipeline, best_case, commit or omitted (what the forecast counts it in)."""
    version = await forecasts.set_category(caller.workspace_id, deal_id, body.forecast_category)
    response.headers["ETag"] = f'"{version}"'
    return CategoryOut(deal_id=deal_id, forecast_category=body.forecast_category, version=version)


class TeamOut(BaseModel):
    id: UUID
    name: str
    members: list[str]

    @classmethod
    def of(cls, team: SalesTeam) -> TeamOut:
        return cls(id=team.id, name=team.name, members=list(team.members))


@router.get("/sales-teams", response_model=list[TeamOut])
async def list_teams(caller: Reader, forecasts: Service) -> list[TeamOut]:
    return [TeamOut.of(t) for t in await forecasts.teams(caller.workspace_id)]


@router.post("/sales-teams", response_model=TeamOut, status_code=201)
async def create_team(caller: Admin, forecasts: Service, body: Annotated[dict[str, Any], Body()]) -> TeamOut:
    """A team: `name` (unique) and `members` (owner subjects; each owner in one team only)."""
    return TeamOut.of(await forecasts.save_team(caller.workspace_id, body))


@router.get("/sales-teams/{team_id}", response_model=TeamOut)
async def get_team(caller: Reader, forecasts: Service, team_id: UUID) -> TeamOut:
    return TeamOut.of(await forecasts.team(caller.workspace_id, team_id))


@router.put("/sales-teams/{team_id}", response_model=TeamOut)
async def replace_team(caller: Admin, forecasts: Service, team_id: UUID,
                       body: Annotated[dict[str, Any], Body()]) -> TeamOut:
    return TeamOut.of(await forecasts.save_team(caller.workspace_id, body, team_id))


@router.delete("/sales-teams/{team_id}", status_code=204)
async def delete_team(caller: Admin, forecasts: Service, team_id: UUID) -> Response:
    await forecasts.delete_team(caller.workspace_id, team_id)
    return Response(status_code=204)


"""Forecast and analytics use cases: the forecast by period and owner or team, the stage funnel,
win rates, sales teams and a deal's forecast category. Reads only, but for teams and categories.

Dates are the workspace's (``PIPELINE_FORECAST_TIME_ZONE``); a day range ``from``..``to`` is
``[from 00:00, to + 1 day 00:00)`` there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg

from crm_pipeline.domain import forecast as rules
from crm_pipeline.domain.errors import FieldError, InvalidFields, NotFound
from crm_pipeline.domain.forecast import ForecastLine, ForecastRange, Grouping, SalesTeam
from crm_pipeline.store.forecast import ForecastStore, FunnelStage, WinRateRow
from crmkit.ids import uuid7
from crmkit.postgres import PgDatabase

DEFAULT_DAYS = 90
"""Funnel and win rate without ``from``: the 90 days up to ``to``."""


@dataclass(frozen=True)
class Forecast:
    as_of: date
    base_currency: str
    span: ForecastRange
    group_by: Grouping | None
    pipeline_id: UUID | None
    lines: list[ForecastLine]
    missing_rates: list[str]


@dataclass(frozen=True)
class DayRange:
    first: date
    last: date
    start: datetime
    end: datetime


class Forecasts:
    def __init__(self, db: PgDatabase, time_zone: str = "UTC") -> None:
        self.db = db
        self.time_zone = time_zone
        self._zone = ZoneInfo(time_zone)

    def today(self, now: datetime | None = None) -> date:
        return (now or datetime.now(UTC)).astimezone(self._zone).date()

    def days(self, first: date | None, last: date | None) -> DayRange:
        last = last or self.today()
        first = first or last - timedelta(days=DEFAULT_DAYS - 1)
        rules.date_range(first, last)
        return DayRange(first, last, datetime.combine(first, time(), self._zone),
                        datetime.combine(last + timedelta(days=1), time(), self._zone))

    async def forecast(self, workspace_id: str, *, period: str, first: date | None = None,
                       last: date | None = None, group_by: str | None = None,
                       pipeline_id: UUID | None = None, as_of: date | None = None) -> Forecast:
        """Weighted, commit, best case, pipeline and won per period (and owner or team), in the
        workspace's base currency by the rates in force on ``as_of`` (today)."""
        as_of = as_of or self.today()
        span = rules.forecast_range(period, first, last, as_of)
        grouped = rules.grouping(group_by)
        async with self.db.pool.acquire() as conn:
            store = ForecastStore(conn)
            await self._check_pipeline(store, workspace_id, pipeline_id)
            base = await store.base_currency(workspace_id)
            sums = await store.forecast_sums(workspace_id, span, grouped, pipeline_id, self.time_zone, as_of)
        lines, missing = rules.forecast_lines(sums, base)
        return Forecast(as_of, base, span, grouped, pipeline_id, lines, missing)

    async def funnel(self, workspace_id: str, pipeline_id: UUID, first: date | None, last: date | None
                     ) -> tuple[DayRange, list[FunnelStage]]:
        """Per stage of the pipeline, over the stage entries in the range: deals that entered,
        moved on to a later stage (or won), and are won now; time in the stage of the exits in
        the range."""
        span = self.days(first, last)
        async with self.db.pool.acquire() as conn:
            store = ForecastStore(conn)
            await self._check_pipeline(store, workspace_id, pipeline_id)
            return span, await store.funnel(workspace_id, pipeline_id, span.start, span.end)

    async def win_rate(self, workspace_id: str, pipeline_id: UUID | None, first: date | None,
                       last: date | None, group_by: str | None) -> tuple[DayRange, list[WinRateRow]]:
        """Won and lost among the deals closed in the range; the average cycle (created → won)."""
        span = self.days(first, last)
        by_owner = rules.grouping(group_by, (Grouping.OWNER,)) is Grouping.OWNER
        async with self.db.pool.acquire() as conn:
            store = ForecastStore(conn)
            await self._check_pipeline(store, workspace_id, pipeline_id)
            return span, await store.win_rate(workspace_id, span.start, span.end, pipeline_id, by_owner)

    @staticmethod
    async def _check_pipeline(store: ForecastStore, workspace_id: str, pipeline_id: UUID | None) -> None:
        if pipeline_id is not None and not await store.pipeline_exists(workspace_id, pipeline_id):
            raise NotFound("pipeline")

    # --- forecast categories and sales teams --------------------------------------------------

    async def set_category(self, workspace_id: str, deal_id: UUID, category: str | None) -> int:
        """Mark a deal pipeline, best_case, commit or omitted; its new version."""
        chosen = rules.category(category)
        async with self.db.unit_of_work() as uow:
            version = await ForecastStore(uow.conn).set_category(workspace_id, deal_id, chosen.value)
        if version is None:
            raise NotFound("deal")
        return version

    async def teams(self, workspace_id: str) -> list[SalesTeam]:
        async with self.db.pool.acquire() as conn:
            return await ForecastStore(conn).teams(workspace_id)

    async def team(self, workspace_id: str, team_id: UUID) -> SalesTeam:
        async with self.db.pool.acquire() as conn:
            found = await ForecastStore(conn).teams(workspace_id, team_id)
        if not found:
            raise NotFound("sales team")
        return found[0]

    async def save_team(self, workspace_id: str, body: dict[str, object], team_id: UUID | None = None
                        ) -> SalesTeam:
        """Create (no ``team_id``) or replace a team: its name (unique) and members (each owner
        in one team only)."""
        name, members = rules.team_fields(body)
        target = team_id or uuid7()
        try:
            await self._save_team(workspace_id, target, name, members, team_id is None)
        except asyncpg.UniqueViolationError:  # a concurrent write took the name or a member
            raise InvalidFields([FieldError("name", "another sales team has this name or members")]) from None
        return SalesTeam(target, name, tuple(sorted(members)))

    async def _save_team(self, workspace_id: str, target: UUID, name: str, members: list[str],
                         create: bool) -> None:
        team_id = None if create else target
        async with self.db.unit_of_work() as uow:
            store = ForecastStore(uow.conn)
            errors = []
            if await store.name_taken(workspace_id, name, team_id):
                errors.append(FieldError("name", "another sales team has this name"))
            elsewhere = await store.members_elsewhere(workspace_id, members, team_id)
            if elsewhere:
                errors.append(FieldError("members", "already in another team: " + ", ".join(elsewhere)))
            if errors:
                raise InvalidFields(errors)
            if not await store.save_team(workspace_id, target, name, members, create=create):
                raise NotFound("sales team")

    async def delete_team(self, workspace_id: str, team_id: UUID) -> None:
        async with self.db.unit_of_work() as uow:
            if not await ForecastStore(uow.conn).delete_team(workspace_id, team_id):
                raise NotFound("sales team")

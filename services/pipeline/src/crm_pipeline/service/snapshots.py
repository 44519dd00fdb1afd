"""Forecast snapshots: the forecast as it stood, stored, so that a manager can compare this week
with last week. Taken on demand (``POST /v1/forecast/snapshots``) and by a background task once
per slot (a week, starting Monday, or a day; ``PIPELINE_FORECAST_SNAPSHOT_EVERY``) for every
workspace with a pipeline.

Restart-safe: a scheduled snapshot carries its slot, and a unique index allows one per
workspace and slot, so a restart, a late tick or a second replica adds nothing twice.
A scheduled snapshot is the quarter forecast by owner over all pipelines, from this quarter to
three quarters ahead.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from uuid import UUID

from crm_pipeline.domain import forecast as rules
from crm_pipeline.domain.errors import FieldError, InvalidFields, NotFound
from crm_pipeline.domain.forecast import ForecastLine, LineChange
from crm_pipeline.service.forecast import Forecasts
from crm_pipeline.store.forecast import ForecastStore, Snapshot
from crmkit.ids import uuid7

log = logging.getLogger(__name__)

Every = Literal["week", "day", "off"]
SCHEDULED_BY = "scheduler"
MAX_LISTED = 200


def slot_of(today: date, every: Every) -> date:
    """The slot ``today`` falls in: the Monday of its week, or the day itself."""
    return today - timedelta(days=today.weekday()) if every == "week" else today


@dataclass(frozen=True)
class Comparison:
    a: Snapshot
    b: Snapshot
    changes: list[LineChange]


class Snapshots:
    def __init__(self, forecasts: Forecasts, every: Every = "week", check_seconds: float = 300.0) -> None:
        self.forecasts = forecasts
        self.db = forecasts.db
        self.every = every
        self.check_seconds = check_seconds

    async def take(self, workspace_id: str, taken_by: str, *, period: str = "quarter",
                   first: date | None = None, last: date | None = None, group_by: str | None = "owner",
                   pipeline_id: UUID | None = None, slot: date | None = None
                   ) -> tuple[Snapshot, list[ForecastLine]] | None:
        """Compute the forecast now and store it; None when ``slot`` has its snapshot already."""
        found = await self.forecasts.forecast(workspace_id, period=period, first=first, last=last,
                                              group_by=group_by, pipeline_id=pipeline_id)
        snapshot = Snapshot(
            id=uuid7(), taken_at=datetime.now(UTC), as_of=found.as_of, slot=slot, taken_by=taken_by,
            pipeline_id=pipeline_id, period=found.span.period.value,
            group_by=found.group_by.value if found.group_by else None, range_start=found.span.start,
            range_end=found.span.end, base_currency=found.base_currency, missing_rates=found.missing_rates)
        async with self.db.unit_of_work() as uow:
            if not await ForecastStore(uow.conn).add_snapshot(workspace_id, snapshot, found.lines):
                return None
        return snapshot, found.lines

    async def listed(self, workspace_id: str, first: date | None, last: date | None) -> list[Snapshot]:
        span = self.forecasts.days(first, last)
        async with self.db.pool.acquire() as conn:
            return await ForecastStore(conn).snapshots(workspace_id, span.start, span.end, MAX_LISTED)

    async def get(self, workspace_id: str, snapshot_id: UUID) -> tuple[Snapshot, list[ForecastLine]]:
        async with self.db.pool.acquire() as conn:
            found = await ForecastStore(conn).snapshot(workspace_id, snapshot_id)
        if found is None:
            raise NotFound("forecast snapshot")
        return found

    async def compare(self, workspace_id: str, a: UUID, b: UUID) -> Comparison:
        """How each (period, group) moved from snapshot ``a`` to ``b``; both must answer the
        same question (period and grouping)."""
        (first, before), (second, after) = await self.get(workspace_id, a), await self.get(workspace_id, b)
        if (first.period, first.group_by) != (second.period, second.group_by):
            raise InvalidFields([FieldError("b", "has another period or grouping than a")])
        return Comparison(first, second, rules.compare(before, after))

    # --- the schedule --------------------------------------------------------------------------

    async def take_due(self, now: datetime | None = None) -> int:
        """Take this slot's snapshot for every workspace that has none yet; how many were taken."""
        if self.every == "off":
            return 0
        slot = slot_of(self.forecasts.today(now), self.every)
        async with self.db.pool.acquire() as conn:
            store = ForecastStore(conn)
            due = [ws for ws in await store.workspaces_with_pipelines()
                   if not await store.slot_taken(ws, slot)]
        taken = 0
        for workspace_id in due:
            if await self.take(workspace_id, SCHEDULED_BY, slot=slot, first=slot) is not None:
                taken += 1
        return taken

    async def run(self) -> None:
        """The background loop: check every ``check_seconds``; a failure is logged and retried
        on the next check."""
        while True:
            try:
                taken = await self.take_due()
                if taken:
                    log.info("forecast snapshots taken", extra={"count": taken})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("forecast snapshots failed; retrying on the next check")
            await asyncio.sleep(self.check_seconds)

"""Reports over a workspace's tickets: volume, response and resolution times, backlog, CSAT.

Every range is ``[from, to)`` in instants; buckets (days, weeks from Monday, months) are cut in
UTC. Durations are calendar time, not business hours: a ticket opened on Friday evening and
answered on Monday morning waited the whole weekend.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from crm_ticketing.domain.errors import FieldError, InvalidFields
from crm_ticketing.store.reports import CsatFigures, ReportsStore, ResponseTimes
from crmkit.postgres import PgDatabase

DEFAULT_SPAN = timedelta(days=30)
MAX_SPAN = timedelta(days=731)  # two years


@dataclass(frozen=True)
class Range:
    start: datetime
    end: datetime


def report_range(start: datetime | None, end: datetime | None, now: datetime) -> Range:
    """``[from, to)``: ``to`` defaults to now, ``from`` to 30 days before ``to``. InvalidFields
    for times without a zone, ``from`` after ``to``, or a span over two years."""
    errors = [FieldError(name, "an ISO 8601 time with its zone")
              for name, value in (("from", start), ("to", end)) if value is not None and value.tzinfo is None]
    if errors:
        raise InvalidFields(errors)
    end = end or now
    start = start or end - DEFAULT_SPAN
    if start > end:
        raise InvalidFields([FieldError("from", "after to")])
    if end - start > MAX_SPAN:
        raise InvalidFields([FieldError("from", f"at most {MAX_SPAN.days} days before to")])
    return Range(start.astimezone(UTC), end.astimezone(UTC))


@dataclass(frozen=True)
class CsatReport:
    sent: int  # surveys sent in the range
    groups: list[CsatFigures]


class Reports:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def volume(self, workspace_id: str, span: Range, interval: str) -> list[tuple[datetime, str, int]]:
        async with self.db.pool.acquire() as conn:
            return await ReportsStore(conn).volume(workspace_id, span.start, span.end, interval)

    async def response_times(self, workspace_id: str, span: Range) -> list[ResponseTimes]:
        async with self.db.pool.acquire() as conn:
            return await ReportsStore(conn).response_times(workspace_id, span.start, span.end)

    async def backlog(self, workspace_id: str) -> dict[str, Any]:
        async with self.db.pool.acquire() as conn:
            return await ReportsStore(conn).backlog(workspace_id, datetime.now(UTC))

    async def csat(self, workspace_id: str, span: Range, group_by: str, interval: str) -> CsatReport:
        async with self.db.pool.acquire() as conn:
            store = ReportsStore(conn)
            return CsatReport(await store.surveys_sent(workspace_id, span.start, span.end),
                              await store.csat(workspace_id, span.start, span.end, group_by, interval))

"""Reports' SQL: aggregates over one workspace's tickets, replies and surveys, computed by
PostgreSQL (``percentile_cont`` for medians and p90). Times are calendar time in seconds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

# Statuses a ticket is waiting in: the backlog.
UNSOLVED = ("new", "open", "pending", "on_hold")
# Age buckets of the backlog: (label, lower bound in days inclusive).
AGE_BUCKETS = (("0-1d", 0), ("1-3d", 1), ("3-7d", 3), ("7-30d", 7), ("30d+", 30))
INTERVALS = ("day", "week", "month")
CSAT_GROUPS = ("agent", "team", "period")


@dataclass(frozen=True)
class Durations:
    """Seconds: how many tickets had one, the median and the 90th percentile (None without any)."""

    count: int
    median: float | None
    p90: float | None


@dataclass(frozen=True)
class ResponseTimes:
    channel: str | None  # None: every channel
    tickets: int
    first_response: Durations
    resolution: Durations


@dataclass(frozen=True)
class CsatFigures:
    key: str | None  # the agent, team or period start (ISO); None: no agent or team
    responses: int
    good: int
    average: float | None


def _age_case() -> str:
    cases = " ".join(f"WHEN now_ - created_at >= interval '{days} days' THEN '{label}'"
                     for label, days in reversed(AGE_BUCKETS))
    return f"CASE {cases} END"


class ReportsStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def volume(self, workspace_id: str, start: datetime, end: datetime, interval: str
                     ) -> list[tuple[datetime, str, int]]:
        """Tickets created in [start, end) per interval (UTC) and channel."""
        assert interval in INTERVALS
        rows = await self.conn.fetch(
            "SELECT date_trunc($4, created_at, 'UTC') AS bucket, channel, count(*) AS tickets"
            " FROM tickets WHERE workspace_id = $1 AND created_at >= $2 AND created_at < $3"
            " GROUP BY 1, 2 ORDER BY 1, 2", workspace_id, start, end, interval)
        return [(r["bucket"], r["channel"], r["tickets"]) for r in rows]

    async def response_times(self, workspace_id: str, start: datetime, end: datetime) -> list[ResponseTimes]:
        """Over tickets created in [start, end): first response (the first public reply minus
        creation) and resolution (solved_at minus creation, for tickets solved or closed),
        overall first and then per channel."""
        rows = await self.conn.fetch(
            "WITH cohort AS ("
            "  SELECT t.channel,"
            "   extract(epoch FROM (SELECT min(m.occurred_at) FROM ticket_messages m"
            "     WHERE m.ticket_id = t.id AND m.workspace_id = t.workspace_id AND m.direction = 'reply')"
            "     - t.created_at)::float8 AS first_response,"
            "   extract(epoch FROM t.solved_at - t.created_at)::float8 AS resolution"
            "  FROM tickets t WHERE t.workspace_id = $1 AND t.created_at >= $2 AND t.created_at < $3)"
            " SELECT channel, grouping(channel) AS overall, count(*) AS tickets,"
            "  count(first_response) AS responded,"
            "  percentile_cont(0.5) WITHIN GROUP (ORDER BY first_response) AS fr_median,"
            "  percentile_cont(0.9) WITHIN GROUP (ORDER BY first_response) AS fr_p90,"
            "  count(resolution) AS resolved,"
            "  percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution) AS res_median,"
            "  percentile_cont(0.9) WITHIN GROUP (ORDER BY resolution) AS res_p90"
            " FROM cohort GROUP BY GROUPING SETS ((), (channel)) ORDER BY overall DESC, channel",
            workspace_id, start, end)
        return [ResponseTimes(channel=None if r["overall"] else r["channel"], tickets=r["tickets"],
                              first_response=Durations(r["responded"], r["fr_median"], r["fr_p90"]),
                              resolution=Durations(r["resolved"], r["res_median"], r["res_p90"]))
                for r in rows]

    async def backlog(self, workspace_id: str, now: datetime) -> dict[str, Any]:
        """Unsolved tickets by status and age (since creation), by assignee and by team."""
        statuses = ", ".join(f"'{s}'" for s in UNSOLVED)
        where = f"workspace_id = $1 AND status IN ({statuses})"
        rows = await self.conn.fetch(
            f"SELECT status, {_age_case()} AS age, count(*) AS tickets"  # noqa: S608
            f" FROM (SELECT status, created_at, $2::timestamptz AS now_ FROM tickets WHERE {where}) AS t"
            " GROUP BY 1, 2", workspace_id, now)
        found: dict[str, Any] = {"by_status_and_age": [(r["status"], r["age"], r["tickets"]) for r in rows]}
        for name, column in (("by_assignee", "assignee"), ("by_team", "team_id")):
            grouped = await self.conn.fetch(
                f"SELECT {column}::text AS key, count(*) AS tickets FROM tickets WHERE {where}"  # noqa: S608
                " GROUP BY 1 ORDER BY 2 DESC, 1 NULLS FIRST LIMIT 1000", workspace_id)
            found[name] = [(r["key"], r["tickets"]) for r in grouped]
        return found

    async def csat(self, workspace_id: str, start: datetime, end: datetime, group_by: str, interval: str
                   ) -> list[CsatFigures]:
        """Answers given in [start, end), grouped by the credited agent, team, or period (UTC)."""
        key = {"agent": "agent", "team": "team_id",
               "period": "to_char(date_trunc($4, rated_at, 'UTC') AT TIME ZONE 'UTC',"
                         " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"}[group_by]
        args: list[Any] = [workspace_id, start, end] + ([interval] if group_by == "period" else [])
        rows = await self.conn.fetch(
            f"SELECT {key} AS key, count(*) AS responses, count(*) FILTER (WHERE rating >= 4) AS good,"  # noqa: S608
            " avg(rating)::float8 AS average FROM csat_surveys"
            " WHERE workspace_id = $1 AND rated_at >= $2 AND rated_at < $3"
            " GROUP BY 1 ORDER BY 1 NULLS LAST LIMIT 1000", *args)
        return [CsatFigures(r["key"], r["responses"], r["good"], r["average"]) for r in rows]

    async def surveys_sent(self, workspace_id: str, start: datetime, end: datetime) -> int:
        sent: int = await self.conn.fetchval(
            "SELECT count(*) FROM csat_surveys"
            " WHERE workspace_id = $1 AND created_at >= $2 AND created_at < $3",
            workspace_id, start, end)
        return sent

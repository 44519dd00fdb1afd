"""SLA's SQL: calendars, policies, each ticket's clocks and the alerts it owes. Every query is
scoped by workspace, except the scheduler's, which works across workspaces by design (the
alerts it claims carry their workspace)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from crm_ticketing.domain.model import TicketStatus
from crm_ticketing.domain.sla import SlaAlert, SlaClock, StoredFact

_STATUSES = frozenset(status.value for status in TicketStatus)

# -- calendars and policies ---------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarRow:
    id: UUID
    workspace_id: str
    name: str
    definition: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PolicyRow:
    id: UUID
    workspace_id: str
    name: str
    position: int
    calendar_id: UUID
    priorities: tuple[str, ...]
    channels: tuple[str, ...]
    tiers: tuple[str, ...]
    first_response_seconds: int | None
    next_response_seconds: int | None
    resolution_seconds: int | None
    warning_percent: int | None
    warning_before_seconds: int | None
    version: int
    created_at: datetime
    updated_at: datetime


_CALENDAR = "id, workspace_id, name, definition::text AS definition, version, created_at, updated_at"
_POLICY = ("id, workspace_id, name, position, calendar_id, priorities, channels, tiers,"
           " first_response_seconds, next_response_seconds, resolution_seconds, warning_percent,"
           " warning_before_seconds, version, created_at, updated_at")
_POLICY_FIELDS = ("name", "position", "calendar_id", "priorities", "channels", "tiers",
                  "first_response_seconds", "next_response_seconds", "resolution_seconds",
                  "warning_percent", "warning_before_seconds")


def _calendar(row: Any) -> CalendarRow:
    fields = dict(row)
    fields["definition"] = json.loads(fields["definition"])
    return CalendarRow(**fields)


def _policy(row: Any) -> PolicyRow:
    fields = dict(row)
    for name in ("priorities", "channels", "tiers"):
        fields[name] = tuple(fields[name])
    return PolicyRow(**fields)


@dataclass(frozen=True)
class TargetRow:
    target: str
    cycle: int
    goal_seconds: int
    state: str
    started_at: datetime
    elapsed_ms: int
    deadline: datetime | None
    warning_at: datetime | None
    stopped_at: datetime | None
    met_at: datetime | None
    breached_at: datetime | None


@dataclass(frozen=True)
class TicketSla:
    policy_id: UUID
    evaluated_at: datetime
    targets: list[TargetRow]


@dataclass(frozen=True)
class DueAlert:
    id: int
    workspace_id: str
    ticket_id: UUID
    policy_id: UUID
    key: str
    kind: str
    target: str
    cycle: int
    due_at: datetime


@dataclass(frozen=True)
class ComplianceRow:
    group: str
    target: str
    met: int
    breached: int
    running: int


class SlaStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # -- calendars --

    async def insert_calendar(self, row: CalendarRow) -> None:
        await self.conn.execute(
            "INSERT INTO sla_calendars (id, workspace_id, name, definition, version, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)",
            row.id, row.workspace_id, row.name, json.dumps(row.definition), row.version, row.created_at,
            row.updated_at)

    async def calendar(self, workspace_id: str, calendar_id: UUID, *, for_update: bool = False
                       ) -> CalendarRow | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self.conn.fetchrow(
            f"SELECT {_CALENDAR} FROM sla_calendars WHERE workspace_id = $1 AND id = $2{lock}",  # noqa: S608
            workspace_id, calendar_id)
        return _calendar(row) if row else None

    async def calendars(self, workspace_id: str, after: tuple[str, str] | None, limit: int
                        ) -> list[CalendarRow]:
        name, last = after or ("", "00000000-0000-0000-0000-000000000000")
        rows = await self.conn.fetch(
            f"SELECT {_CALENDAR} FROM sla_calendars WHERE workspace_id = $1"  # noqa: S608
            " AND (name, id) > ($2, $3::uuid) ORDER BY name, id LIMIT $4",
            workspace_id, name, last, limit)
        return [_calendar(r) for r in rows]

    async def update_calendar(self, row: CalendarRow) -> None:
        await self.conn.execute(
            "UPDATE sla_calendars SET name = $3, definition = $4::jsonb, version = $5, updated_at = $6"
            " WHERE workspace_id = $1 AND id = $2",
            row.workspace_id, row.id, row.name, json.dumps(row.definition), row.version, row.updated_at)

    async def calendar_in_use(self, workspace_id: str, calendar_id: UUID) -> bool:
        return bool(await self.conn.fetchval(
            "SELECT 1 FROM sla_policies WHERE workspace_id = $1 AND calendar_id = $2 LIMIT 1",
            workspace_id, calendar_id))

    async def delete_calendar(self, workspace_id: str, calendar_id: UUID) -> None:
        await self.conn.execute("DELETE FROM sla_calendars WHERE workspace_id = $1 AND id = $2",
                                workspace_id, calendar_id)

    # -- policies --

    async def insert_policy(self, row: PolicyRow) -> None:
        await self.conn.execute(
            f"INSERT INTO sla_policies (id, workspace_id, {', '.join(_POLICY_FIELDS)}, version,"  # noqa: S608
            " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6::text[], $7::text[], $8::text[],"
            " $9, $10, $11, $12, $13, $14, $15, $16)",
            row.id, row.workspace_id, *self._policy_values(row), row.version, row.created_at, row.updated_at)

    async def update_policy(self, row: PolicyRow) -> None:
        sets = ", ".join(f"{name} = ${n}" for n, name in enumerate(_POLICY_FIELDS, start=3))
        await self.conn.execute(
            f"UPDATE sla_policies SET {sets}, version = $14, updated_at = $15"  # noqa: S608
            " WHERE workspace_id = $1 AND id = $2",
            row.workspace_id, row.id, *self._policy_values(row), row.version, row.updated_at)

    @staticmethod
    def _policy_values(row: PolicyRow) -> list[Any]:
        return [row.name, row.position, row.calendar_id, list(row.priorities), list(row.channels),
                list(row.tiers), row.first_response_seconds, row.next_response_seconds,
                row.resolution_seconds, row.warning_percent, row.warning_before_seconds]

    async def policy(self, workspace_id: str, policy_id: UUID, *, for_update: bool = False
                     ) -> PolicyRow | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self.conn.fetchrow(
            f"SELECT {_POLICY} FROM sla_policies WHERE workspace_id = $1 AND id = $2{lock}",  # noqa: S608
            workspace_id, policy_id)
        return _policy(row) if row else None

    async def policies(self, workspace_id: str, after: tuple[int, str] | None = None,
                       limit: int = 1_000_000) -> list[PolicyRow]:
        """By position, then id: the order in which policies are matched."""
        position, last = after or (-(2**31), "00000000-0000-0000-0000-000000000000")
        rows = await self.conn.fetch(
            f"SELECT {_POLICY} FROM sla_policies WHERE workspace_id = $1"  # noqa: S608
            " AND (position, id) > ($2, $3::uuid) ORDER BY position, id LIMIT $4",
            workspace_id, position, last, limit)
        return [_policy(r) for r in rows]

    async def calendars_by_id(self, workspace_id: str, ids: Sequence[UUID]) -> dict[UUID, CalendarRow]:
        rows = await self.conn.fetch(
            f"SELECT {_CALENDAR} FROM sla_calendars WHERE workspace_id = $1 AND id = ANY($2::uuid[])",  # noqa: S608
            workspace_id, list(set(ids)))
        return {r["id"]: _calendar(r) for r in rows}

    async def delete_policy(self, workspace_id: str, policy_id: UUID) -> None:
        await self.conn.execute("DELETE FROM sla_policies WHERE workspace_id = $1 AND id = $2",
                                workspace_id, policy_id)

    async def open_tickets_of(self, workspace_id: str, *, policy_ids: Sequence[UUID]) -> list[UUID]:
        """Tickets not closed whose clocks run under one of ``policy_ids``."""
        rows = await self.conn.fetch(
            "SELECT s.ticket_id FROM ticket_sla s JOIN tickets t ON t.id = s.ticket_id"
            " WHERE s.workspace_id = $1 AND s.policy_id = ANY($2::uuid[]) AND t.status <> 'closed'",
            workspace_id, list(policy_ids))
        return [r["ticket_id"] for r in rows]

    async def open_tickets_without_policy(self, workspace_id: str) -> list[UUID]:
        rows = await self.conn.fetch(
            "SELECT t.id FROM tickets t LEFT JOIN ticket_sla s ON s.ticket_id = t.id"
            " WHERE t.workspace_id = $1 AND s.ticket_id IS NULL AND t.status NOT IN ('solved', 'closed')",
            workspace_id)
        return [r["id"] for r in rows]

    # -- what a clock is computed from --

    async def facts(self, ticket_ids: Sequence[UUID]) -> dict[UUID, list[StoredFact]]:
        """Every ticket's messages (in time order) then status changes (in the order made)."""
        found: dict[UUID, list[StoredFact]] = {ticket_id: [] for ticket_id in ticket_ids}
        for row in await self.conn.fetch(
            "SELECT ticket_id, occurred_at, direction FROM ticket_messages"
            " WHERE ticket_id = ANY($1::uuid[]) ORDER BY ticket_id, occurred_at, interaction_id",
            list(ticket_ids)):
            found[row["ticket_id"]].append(StoredFact(row["occurred_at"], direction=row["direction"]))
        for row in await self.conn.fetch(
            "SELECT ticket_id, at, new #>> '{}' AS status FROM ticket_history"
            " WHERE ticket_id = ANY($1::uuid[]) AND field = 'status' ORDER BY ticket_id, id",
            list(ticket_ids)):
            if row["status"] in _STATUSES:
                found[row["ticket_id"]].append(StoredFact(row["at"], status=TicketStatus(row["status"])))
        return found

    async def policies_of(self, ticket_ids: Sequence[UUID]) -> dict[UUID, UUID]:
        rows = await self.conn.fetch(
            "SELECT ticket_id, policy_id FROM ticket_sla WHERE ticket_id = ANY($1::uuid[])", list(ticket_ids))
        return {r["ticket_id"]: r["policy_id"] for r in rows}

    # -- clocks and alerts written --

    async def save_clocks(self, workspace_id: str, ticket_ids: Sequence[UUID], clocks: Sequence[SlaClock]
                          ) -> None:
        """Replace the stored clocks of ``ticket_ids`` with ``clocks`` (a ticket without one has
        no policy now)."""
        ids = list(ticket_ids)
        await self.conn.execute("DELETE FROM ticket_sla_targets WHERE ticket_id = ANY($1::uuid[])", ids)
        kept = {clock.ticket_id for clock in clocks}
        gone = [ticket_id for ticket_id in ids if ticket_id not in kept]
        if gone:
            await self.conn.execute("DELETE FROM ticket_sla WHERE ticket_id = ANY($1::uuid[])", gone)
        if not clocks:
            return
        await self.conn.executemany(
            "INSERT INTO ticket_sla (ticket_id, workspace_id, policy_id, evaluated_at)"
            " VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (ticket_id) DO UPDATE SET policy_id = EXCLUDED.policy_id,"
            " evaluated_at = EXCLUDED.evaluated_at",
            [(c.ticket_id, workspace_id, c.policy_id, c.evaluated_at) for c in clocks])
        await self.conn.copy_records_to_table(
            "ticket_sla_targets",
            columns=("ticket_id", "workspace_id", "policy_id", "target", "cycle", "goal_seconds", "state",
                     "started_at", "elapsed_ms", "deadline", "warning_at", "stopped_at", "met_at",
                     "breached_at"),
            records=[(c.ticket_id, workspace_id, c.policy_id, t.target.value, t.cycle,
                      int(t.goal.total_seconds()), t.state.value, t.started_at,
                      t.elapsed // timedelta(milliseconds=1), t.deadline, t.warning_at, t.stopped_at,
                      t.met_at, t.breached_at) for c in clocks for t in c.targets])

    async def save_alerts(self, workspace_id: str, ticket_ids: Sequence[UUID],
                          owed: Sequence[tuple[UUID, SlaAlert]]) -> None:
        """Make the unfired alerts of ``ticket_ids`` exactly ``owed`` ((policy, alert) pairs):
        new ones inserted, moved ones re-timed, the rest deleted. Fired ones stay as they are."""
        keys = [alert.key for _, alert in owed]
        await self.conn.execute(
            "DELETE FROM sla_alerts WHERE ticket_id = ANY($1::uuid[]) AND fired_at IS NULL"
            " AND NOT (key = ANY($2::text[]))", list(ticket_ids), keys)
        if not owed:
            return
        await self.conn.execute(
            "INSERT INTO sla_alerts (workspace_id, ticket_id, policy_id, key, kind, target, cycle, due_at)"
            " SELECT $1, * FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],"
            " $7::int[], $8::timestamptz[])"
            " ON CONFLICT (key) DO UPDATE SET due_at = EXCLUDED.due_at, policy_id = EXCLUDED.policy_id"
            " WHERE sla_alerts.fired_at IS NULL AND"
            " (sla_alerts.due_at, sla_alerts.policy_id)"
            " IS DISTINCT FROM (EXCLUDED.due_at, EXCLUDED.policy_id)",
            workspace_id, [a.ticket_id for _, a in owed], [p for p, _ in owed], keys,
            [a.kind.value for _, a in owed], [a.target.value for _, a in owed], [a.cycle for _, a in owed],
            [a.at for _, a in owed])

    # -- the scheduler --

    async def lock_due_tickets(self, now: datetime, limit: int) -> list[tuple[str, UUID]]:
        """Lock (skipping those another transaction holds) up to ``limit`` tickets with an
        unfired alert due by ``now``, the most overdue first. Tickets before alerts, the order a
        ticket's change takes too, so the two never deadlock."""
        rows = await self.conn.fetch(
            "SELECT t.workspace_id, t.id FROM tickets t WHERE t.id IN ("
            "  SELECT ticket_id FROM sla_alerts WHERE fired_at IS NULL AND due_at <= $1"
            "  ORDER BY due_at LIMIT $3)"
            " LIMIT $2 FOR UPDATE OF t SKIP LOCKED",
            now, limit, limit * 4)
        return [(r["workspace_id"], r["id"]) for r in rows]

    async def due_alerts(self, ticket_ids: Sequence[UUID], now: datetime) -> list[DueAlert]:
        rows = await self.conn.fetch(
            "SELECT id, workspace_id, ticket_id, policy_id, key, kind, target, cycle, due_at FROM sla_alerts"
            " WHERE ticket_id = ANY($1::uuid[]) AND fired_at IS NULL AND due_at <= $2 ORDER BY due_at"
            " FOR UPDATE SKIP LOCKED",
            list(ticket_ids), now)
        return [DueAlert(**dict(r)) for r in rows]

    async def mark_fired(self, fired: Sequence[tuple[int, datetime]]) -> None:
        if fired:
            await self.conn.execute(
                "UPDATE sla_alerts a SET fired_at = f.at FROM unnest($1::bigint[], $2::timestamptz[])"
                " AS f(id, at) WHERE a.id = f.id AND a.fired_at IS NULL",
                [i for i, _ in fired], [at for _, at in fired])

    async def earliest_due(self) -> datetime | None:
        due: datetime | None = await self.conn.fetchval(
            "SELECT due_at FROM sla_alerts WHERE fired_at IS NULL ORDER BY due_at LIMIT 1")
        return due

    # -- reads --

    async def ticket_sla(self, workspace_id: str, ticket_id: UUID) -> TicketSla | None:
        head = await self.conn.fetchrow(
            "SELECT policy_id, evaluated_at FROM ticket_sla WHERE workspace_id = $1 AND ticket_id = $2",
            workspace_id, ticket_id)
        if head is None:
            return None
        rows = await self.conn.fetch(
            "SELECT target, cycle, goal_seconds, state, started_at, elapsed_ms, deadline, warning_at,"
            " stopped_at, met_at, breached_at FROM ticket_sla_targets WHERE workspace_id = $1"
            " AND ticket_id = $2 ORDER BY array_position(ARRAY['first_response', 'resolution',"
            " 'next_response'], target), cycle", workspace_id, ticket_id)
        return TicketSla(head["policy_id"], head["evaluated_at"], [TargetRow(**dict(r)) for r in rows])

    async def compliance(self, workspace_id: str, since: datetime, until: datetime, group_by: str,
                         now: datetime) -> list[ComplianceRow]:
        """Per group and target, over the clock cycles started in ``[since, until)``: met,
        breached (a running clock past its deadline counts as breached) and still running."""
        group = {"policy": "s.policy_id::text", "priority": "t.priority", "channel": "t.channel"}[group_by]
        rows = await self.conn.fetch(
            f"SELECT {group} AS grp, s.target,"  # noqa: S608
            " count(*) FILTER (WHERE s.met_at IS NOT NULL) AS met,"
            " count(*) FILTER (WHERE s.met_at IS NULL AND (s.breached_at IS NOT NULL"
            "   OR (s.state = 'running' AND s.deadline <= $4))) AS breached,"
            " count(*) FILTER (WHERE s.met_at IS NULL AND s.breached_at IS NULL"
            "   AND NOT (s.state = 'running' AND s.deadline IS NOT NULL AND s.deadline <= $4)) AS running"
            " FROM ticket_sla_targets s JOIN tickets t ON t.id = s.ticket_id"
            " WHERE s.workspace_id = $1 AND s.started_at >= $2 AND s.started_at < $3"
            " GROUP BY 1, 2 ORDER BY 1, 2",
            workspace_id, since, until, now)
        return [ComplianceRow(r["grp"], r["target"], r["met"], r["breached"], r["running"]) for r in rows]

"""Assignment's SQL: agents, teams and their members, queues, and where tickets wait. Every
query is scoped by workspace."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from crm_ticketing.domain.assignment import Agent, Availability, Queue, Rules, Strategy, Team, rules_of
from crm_ticketing.domain.business_hours import BusinessCalendar
from crm_ticketing.domain.model import Ticket

_AGENT = ("workspace_id, id, display_name, skills, capacity, working_hours::text AS working_hours,"
          " availability, active, last_assigned_at, version, created_at, updated_at")
_QUEUE = ("id, workspace_id, name, team_id, strategy, required_skills, position, rules::text AS rules,"
          " version, created_at, updated_at")
# Tickets that count against an agent's capacity, and those that go back to their queue.
_HELD = ["new", "open", "pending", "on_hold"]
_RETURNED = ["new", "open"]


def _agent(row: Any) -> Agent:
    fields = dict(row)
    fields["skills"] = tuple(fields["skills"])
    hours = fields["working_hours"]
    fields["working_hours"] = None if hours is None else BusinessCalendar.from_dict(json.loads(hours))
    fields["availability"] = Availability(fields["availability"])
    return Agent(**fields)


def _queue(row: Any) -> Queue:
    fields = dict(row)
    fields["strategy"] = Strategy(fields["strategy"])
    fields["required_skills"] = tuple(fields["required_skills"])
    fields["rules"] = rules_of(json.loads(fields["rules"]))
    return Queue(**fields)


def _rules_json(rules: Rules) -> str:
    return json.dumps(rules.to_dict())


class AssignmentStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def lock_workspace(self, workspace_id: str) -> None:
        """Serialise every assignment decision of the workspace until the transaction ends:
        two transactions never give out one agent's last free place, nor move one queue's
        round-robin cursor, at once. Taken before any other assignment lock; ticket rows locked
        after it are locked with SKIP LOCKED, so that it never waits while holding it."""
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('assignment:' || $1, 0))",
                                workspace_id)

    # -- agents ------------------------------------------------------------------------------

    async def put_agent(self, workspace_id: str, agent_id: str, values: dict[str, Any]) -> Agent:
        """Create the agent or replace its definition (reactivating it); bumps its version."""
        hours = values["working_hours"]
        row = await self.conn.fetchrow(
            "INSERT INTO agents (workspace_id, id, display_name, skills, capacity, working_hours,"  # noqa: S608
            " availability) VALUES ($1, $2, $3, $4::text[], $5, $6::jsonb, coalesce($7::text, 'offline'))"
            " ON CONFLICT (workspace_id, id) DO UPDATE SET display_name = EXCLUDED.display_name,"
            " skills = EXCLUDED.skills, capacity = EXCLUDED.capacity, working_hours = EXCLUDED.working_hours,"
            " availability = coalesce($7::text, agents.availability), active = true,"
            " version = agents.version + 1,"
            f" updated_at = now() RETURNING {_AGENT}",
            workspace_id, agent_id, values["display_name"], list(values["skills"]), values["capacity"],
            None if hours is None else json.dumps(hours.to_dict()),
            None if values["availability"] is None else values["availability"].value,
        )
        return _agent(row)

    async def agent(self, workspace_id: str, agent_id: str, *, for_update: bool = False) -> Agent | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self.conn.fetchrow(
            f"SELECT {_AGENT} FROM agents WHERE workspace_id = $1 AND id = $2{lock}",  # noqa: S608
            workspace_id, agent_id)
        return _agent(row) if row else None

    async def agents(self, workspace_id: str, after_id: str | None, limit: int) -> list[Agent]:
        rows = await self.conn.fetch(
            f"SELECT {_AGENT} FROM agents WHERE workspace_id = $1 AND id > $2"  # noqa: S608
            " ORDER BY id LIMIT $3", workspace_id, after_id or "", limit)
        return [_agent(r) for r in rows]

    async def members(self, workspace_id: str, team_id: UUID) -> list[Agent]:
        """The team's active agents, by id."""
        rows = await self.conn.fetch(
            f"SELECT {', '.join('a.' + c.strip() for c in _AGENT.split(','))} FROM agents a"  # noqa: S608
            " JOIN team_members m ON m.workspace_id = a.workspace_id AND m.agent_id = a.id"
            " WHERE a.workspace_id = $1 AND m.team_id = $2 AND a.active ORDER BY a.id",
            workspace_id, team_id)
        return [_agent(r) for r in rows]

    async def set_availability(self, workspace_id: str, agent_id: str, availability: Availability
                               ) -> tuple[Agent, Availability] | None:
        """The agent after the change and its availability before; None for no active agent."""
        before = await self.conn.fetchval(
            "SELECT availability FROM agents WHERE workspace_id = $1 AND id = $2 AND active FOR UPDATE",
            workspace_id, agent_id)
        if before is None:
            return None
        row = await self.conn.fetchrow(
            "UPDATE agents SET availability = $3,"  # noqa: S608
            " version = version + CASE WHEN availability = $3 THEN 0 ELSE 1 END,"
            " updated_at = CASE WHEN availability = $3 THEN updated_at ELSE now() END"
            f" WHERE workspace_id = $1 AND id = $2 RETURNING {_AGENT}",
            workspace_id, agent_id, availability.value)
        return _agent(row), Availability(before)

    async def deactivate(self, workspace_id: str, agent_id: str) -> list[UUID]:
        """The agent leaves every team and can be given no more tickets; returns its teams."""
        await self.conn.execute(
            "UPDATE agents SET active = false, availability = 'offline', version = version + 1,"
            " updated_at = now() WHERE workspace_id = $1 AND id = $2", workspace_id, agent_id)
        rows = await self.conn.fetch(
            "DELETE FROM team_members WHERE workspace_id = $1 AND agent_id = $2 RETURNING team_id",
            workspace_id, agent_id)
        return [r["team_id"] for r in rows]

    async def touch_assigned(self, workspace_id: str, agent_id: str, at: datetime) -> None:
        await self.conn.execute("UPDATE agents SET last_assigned_at = $3 WHERE workspace_id = $1 AND id = $2",
                                workspace_id, agent_id, at)

    async def held(self, workspace_id: str, agent_ids: Sequence[str]) -> dict[str, int]:
        """How many new, open, pending and on-hold tickets each agent holds."""
        rows = await self.conn.fetch(
            "SELECT assignee, count(*) AS n FROM tickets WHERE workspace_id = $1"
            " AND assignee = ANY($2::text[]) AND status = ANY($3::text[]) GROUP BY assignee",
            workspace_id, list(agent_ids), _HELD)
        counts = dict.fromkeys(agent_ids, 0)
        counts.update({r["assignee"]: r["n"] for r in rows})
        return counts

    async def assignable(self, workspace_id: str, agent_id: str) -> bool:
        """Whether a person may give the agent tickets: it exists here and is active."""
        return bool(await self.conn.fetchval(
            "SELECT 1 FROM agents WHERE workspace_id = $1 AND id = $2 AND active", workspace_id, agent_id))

    # -- teams -------------------------------------------------------------------------------

    async def insert_team(self, workspace_id: str, team_id: UUID, name: str) -> bool:
        """False when the name is taken."""
        return await self.conn.fetchval(
            "INSERT INTO teams (id, workspace_id, name) VALUES ($1, $2, $3)"
            " ON CONFLICT (workspace_id, name) DO NOTHING RETURNING true",
            team_id, workspace_id, name) is not None

    async def update_team(self, workspace_id: str, team_id: UUID, name: str | None) -> bool:
        """Bumps the version; False when the new name is another team's."""
        try:
            await self.conn.execute(
                "UPDATE teams SET name = coalesce($3, name), version = version + 1, updated_at = now()"
                " WHERE workspace_id = $1 AND id = $2", workspace_id, team_id, name)
        except asyncpg.UniqueViolationError:
            return False
        return True

    async def set_members(self, workspace_id: str, team_id: UUID, members: Sequence[str]) -> list[str]:
        """Replace the team's members; returns the agents removed."""
        removed = await self.conn.fetch(
            "DELETE FROM team_members WHERE workspace_id = $1 AND team_id = $2"
            " AND NOT agent_id = ANY($3::text[]) RETURNING agent_id", workspace_id, team_id, list(members))
        await self.conn.executemany(
            "INSERT INTO team_members (workspace_id, team_id, agent_id) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            [(workspace_id, team_id, m) for m in members])
        return [r["agent_id"] for r in removed]

    async def team(self, workspace_id: str, team_id: UUID, *, for_update: bool = False) -> Team | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self.conn.fetchrow(
            "SELECT id, workspace_id, name, version, created_at, updated_at FROM teams"  # noqa: S608
            f" WHERE workspace_id = $1 AND id = $2{lock}",
            workspace_id, team_id)
        if row is None:
            return None
        members = await self.conn.fetch(
            "SELECT agent_id FROM team_members WHERE workspace_id = $1 AND team_id = $2 ORDER BY agent_id",
            workspace_id, team_id)
        return Team(**dict(row), members=tuple(m["agent_id"] for m in members))

    async def teams(self, workspace_id: str, after_id: UUID | None, limit: int) -> list[Team]:
        rows = await self.conn.fetch(
            "SELECT id FROM teams WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            workspace_id, after_id or UUID(int=0), limit)
        found = [await self.team(workspace_id, r["id"]) for r in rows]
        return [t for t in found if t is not None]

    async def delete_team(self, workspace_id: str, team_id: UUID) -> None:
        """Raises asyncpg.ForeignKeyViolationError while a queue routes to it."""
        await self.conn.execute("DELETE FROM teams WHERE workspace_id = $1 AND id = $2",
                                workspace_id, team_id)

    async def teams_of_agent(self, workspace_id: str, agent_id: str) -> list[UUID]:
        rows = await self.conn.fetch(
            "SELECT team_id FROM team_members WHERE workspace_id = $1 AND agent_id = $2",
            workspace_id, agent_id)
        return [r["team_id"] for r in rows]

    async def inactive_or_unknown(self, workspace_id: str, agent_ids: Sequence[str]) -> list[str]:
        rows = await self.conn.fetch(
            "SELECT id FROM agents WHERE workspace_id = $1 AND id = ANY($2::text[]) AND active",
            workspace_id, list(agent_ids))
        known = {r["id"] for r in rows}
        return [a for a in agent_ids if a not in known]

    # -- queues ------------------------------------------------------------------------------

    async def insert_queue(self, workspace_id: str, queue_id: UUID, values: dict[str, Any]) -> bool:
        """False when the name is taken."""
        return await self.conn.fetchval(
            "INSERT INTO queues (id, workspace_id, name, team_id, strategy, required_skills, position, rules)"
            " VALUES ($1, $2, $3, $4, $5, $6::text[], $7, $8::jsonb)"
            " ON CONFLICT (workspace_id, name) DO NOTHING RETURNING true",
            queue_id, workspace_id, values["name"], values["team_id"], values["strategy"].value,
            list(values["required_skills"]), values["position"], _rules_json(values["rules"]),
        ) is not None

    async def update_queue(self, queue: Queue) -> bool:
        """Write every field and bump the version; False when the name is another queue's."""
        try:
            await self.conn.execute(
                "UPDATE queues SET name = $3, team_id = $4, strategy = $5, required_skills = $6::text[],"
                " position = $7, rules = $8::jsonb, version = version + 1, updated_at = now()"
                " WHERE workspace_id = $1 AND id = $2",
                queue.workspace_id, queue.id, queue.name, queue.team_id, queue.strategy.value,
                list(queue.required_skills), queue.position, _rules_json(queue.rules))
        except asyncpg.UniqueViolationError:
            return False
        return True

    async def queue(self, workspace_id: str, queue_id: UUID, *, for_update: bool = False) -> Queue | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self.conn.fetchrow(
            f"SELECT {_QUEUE} FROM queues WHERE workspace_id = $1 AND id = $2{lock}",  # noqa: S608
            workspace_id, queue_id)
        return _queue(row) if row else None

    async def queues(self, workspace_id: str, after: tuple[int, UUID] | None = None, limit: int = 1000
                     ) -> list[Queue]:
        """By position, then id."""
        position, queue_id = after or (-1, UUID(int=0))
        rows = await self.conn.fetch(
            f"SELECT {_QUEUE} FROM queues WHERE workspace_id = $1 AND (position, id) > ($2, $3)"  # noqa: S608
            " ORDER BY position, id LIMIT $4", workspace_id, position, queue_id, limit)
        return [_queue(r) for r in rows]

    async def queues_of_teams(self, workspace_id: str, team_ids: Sequence[UUID]) -> list[Queue]:
        rows = await self.conn.fetch(
            f"SELECT {_QUEUE} FROM queues WHERE workspace_id = $1 AND team_id = ANY($2::uuid[])"  # noqa: S608
            " ORDER BY position, id", workspace_id, list(team_ids))
        return [_queue(r) for r in rows]

    async def delete_queue(self, workspace_id: str, queue_id: UUID) -> None:
        """Its waiting tickets stay with the team, in no queue."""
        await self.conn.execute("UPDATE tickets SET queue_id = NULL, queued_at = NULL"
                                " WHERE workspace_id = $1 AND queue_id = $2", workspace_id, queue_id)
        await self.conn.execute("DELETE FROM queues WHERE workspace_id = $1 AND id = $2",
                                workspace_id, queue_id)

    async def cursor(self, workspace_id: str, queue_id: UUID) -> str | None:
        """The agent round-robin chose last; locks the queue's row until the transaction ends."""
        cursor: str | None = await self.conn.fetchval(
            "SELECT rr_cursor FROM queues WHERE workspace_id = $1 AND id = $2 FOR UPDATE",
            workspace_id, queue_id)
        return cursor

    async def set_cursor(self, workspace_id: str, queue_id: UUID, agent_id: str) -> None:
        await self.conn.execute("UPDATE queues SET rr_cursor = $3 WHERE workspace_id = $1 AND id = $2",
                                workspace_id, queue_id, agent_id)

    # -- tickets -----------------------------------------------------------------------------

    async def queue_of(self, workspace_id: str, ticket_id: UUID) -> UUID | None:
        queue_id: UUID | None = await self.conn.fetchval(
            "SELECT queue_id FROM tickets WHERE workspace_id = $1 AND id = $2", workspace_id, ticket_id)
        return queue_id

    async def place(self, ticket: Ticket, queue_id: UUID | None, now: datetime) -> None:
        """Write the ticket's team, assignee, version and time, and the queue it is in (it keeps
        its first ``queued_at`` while it stays in one queue)."""
        await self.conn.execute(
            "UPDATE tickets SET team_id = $3, assignee = $4, version = $5, updated_at = $6, queue_id = $7,"
            " queued_at = CASE WHEN $7::uuid IS NULL THEN NULL"
            "                  WHEN queue_id IS NOT DISTINCT FROM $7::uuid THEN coalesce(queued_at, $8)"
            "                  ELSE $8 END"
            " WHERE workspace_id = $1 AND id = $2",
            ticket.workspace_id, ticket.id, ticket.team_id, ticket.assignee, ticket.version,
            ticket.updated_at, queue_id, now)

    async def leave_queue(self, workspace_id: str, ticket_id: UUID) -> None:
        """A person placed the ticket: it waits in no queue."""
        await self.conn.execute("UPDATE tickets SET queue_id = NULL, queued_at = NULL"
                                " WHERE workspace_id = $1 AND id = $2", workspace_id, ticket_id)

    async def waiting(self, workspace_id: str, queue_ids: Sequence[UUID], limit: int
                      ) -> list[tuple[UUID, UUID]]:
        """Unassigned new or open tickets waiting in these queues, oldest waiting first; locked,
        skipping those another transaction holds (its own change routes them)."""
        rows = await self.conn.fetch(
            "SELECT id, queue_id FROM tickets WHERE workspace_id = $1 AND queue_id = ANY($2::uuid[])"
            " AND assignee IS NULL AND status = ANY($3::text[]) ORDER BY queued_at, id LIMIT $4"
            " FOR UPDATE SKIP LOCKED",
            workspace_id, list(queue_ids), _RETURNED, limit)
        return [(r["id"], r["queue_id"]) for r in rows]

    async def returned(self, workspace_id: str, agent_id: str, team_ids: Sequence[UUID] | None) -> list[UUID]:
        """The agent's new and open tickets (of these teams, or all), oldest first; locked,
        skipping those another transaction holds (its own change hands them back)."""
        rows = await self.conn.fetch(
            "SELECT id FROM tickets WHERE workspace_id = $1 AND assignee = $2 AND status = ANY($3::text[])"
            " AND ($4::uuid[] IS NULL OR team_id = ANY($4::uuid[])) ORDER BY created_at, id"
            " FOR UPDATE SKIP LOCKED",
            workspace_id, agent_id, _RETURNED, None if team_ids is None else list(team_ids))
        return [r["id"] for r in rows]

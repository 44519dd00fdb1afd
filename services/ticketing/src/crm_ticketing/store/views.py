"""Saved views' rows, and the one place that turns a :class:`TicketFilter` into SQL (for
views, their counts, and the filters of ``GET /v1/tickets``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from crm_ticketing.domain.model import Ticket
from crm_ticketing.domain.views import ME, UNASSIGNED, TicketFilter
from crm_ticketing.store.tickets import _READ, _ticket


@dataclass(frozen=True)
class View:
    id: UUID
    workspace_id: str
    owner: str
    shared: bool
    name: str
    filters: dict[str, Any]
    sort: str
    version: int
    created_at: datetime
    updated_at: datetime


_VIEW = ("id, workspace_id, owner, shared, name, filters::text AS filters, sort, version, created_at,"
         " updated_at")


def _view(row: Any) -> View:
    fields = dict(row)
    fields["filters"] = json.loads(fields["filters"])
    return View(**fields)


class Conditions:
    """A WHERE clause being built, with its numbered arguments."""

    def __init__(self, workspace_id: str) -> None:
        self.args: list[Any] = [workspace_id]
        self.sql: list[str] = ["workspace_id = $1"]

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def filter_conditions(where: Conditions, found: TicketFilter, caller: str) -> None:
    """Add ``found``'s conditions; ``caller`` is who "me" is. Statuses, priorities, types and
    channels are enum values checked by the domain, written as literals so that the planner
    sees them whatever plan is cached (and picks the per-status index)."""
    for column, values in (("status", found.status), ("priority", found.priority),
                           ("type", found.type), ("channel", found.channel)):
        if values:
            listed = ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)
            where.sql.append(f"{column} IN ({listed})")
    if found.tags_all:
        where.sql.append(f"tags @> {where.arg(list(found.tags_all))}::text[]")
    if found.tags_any:
        where.sql.append(f"tags && {where.arg(list(found.tags_any))}::text[]")
    if found.contact_id is not None:
        where.sql.append(f"contact_id = {where.arg(found.contact_id)}")
    for column, start, end in (("created_at", found.created_from, found.created_to),
                               ("updated_at", found.updated_from, found.updated_to)):
        if start is not None:
            where.sql.append(f"{column} >= {where.arg(start)}")
        if end is not None:
            where.sql.append(f"{column} < {where.arg(end)}")
    if found.assignee == UNASSIGNED:
        where.sql.append("assignee IS NULL")
    elif found.assignee is not None:
        where.sql.append(f"assignee = {where.arg(caller if found.assignee == ME else found.assignee)}")
    if found.team_id == UNASSIGNED:
        where.sql.append("team_id IS NULL")
    elif found.team_id is not None:
        where.sql.append(f"team_id = {where.arg(UUID(found.team_id))}")


def page_query(workspace_id: str, found: TicketFilter, caller: str, sort: str,
               after: tuple[datetime, UUID] | None, limit: int) -> tuple[str, list[Any]]:
    """The SQL and arguments of a keyset page of the tickets ``found`` matches, in ``sort``
    order (``-created_at``: newest first), after the row ``after`` names (its sort value, id)."""
    where = Conditions(workspace_id)
    filter_conditions(where, found, caller)
    column, direction = sort.lstrip("-"), "DESC" if sort.startswith("-") else "ASC"
    if after is not None:
        sign = "<" if direction == "DESC" else ">"
        where.sql.append(f"({column}, id) {sign} ({where.arg(after[0])}, {where.arg(after[1])})")
    query = (f"SELECT {_READ} FROM tickets WHERE {' AND '.join(where.sql)}"  # noqa: S608
             f" ORDER BY {column} {direction}, id {direction} LIMIT {where.arg(limit)}")
    return query, where.args


class ViewsStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def insert(self, view: View) -> None:
        await self.conn.execute(
            "INSERT INTO ticket_views (id, workspace_id, owner, shared, name, filters, sort, version,"
            " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10)",
            view.id, view.workspace_id, view.owner, view.shared, view.name, json.dumps(view.filters),
            view.sort, view.version, view.created_at, view.updated_at)

    async def update(self, view: View) -> None:
        await self.conn.execute(
            "UPDATE ticket_views SET shared = $3, name = $4, filters = $5::jsonb, sort = $6, version = $7,"
            " updated_at = $8 WHERE workspace_id = $1 AND id = $2",
            view.workspace_id, view.id, view.shared, view.name, json.dumps(view.filters), view.sort,
            view.version, view.updated_at)

    async def delete(self, workspace_id: str, view_id: UUID) -> None:
        await self.conn.execute("DELETE FROM ticket_views WHERE workspace_id = $1 AND id = $2",
                                workspace_id, view_id)

    async def get(self, workspace_id: str, view_id: UUID, *, for_update: bool = False) -> View | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self.conn.fetchrow(
            f"SELECT {_VIEW} FROM ticket_views WHERE workspace_id = $1 AND id = $2{lock}",  # noqa: S608
            workspace_id, view_id)
        return _view(row) if row else None

    async def visible(self, workspace_id: str, caller: str, limit: int) -> list[View]:
        """The caller's own views and the shared ones, by name."""
        rows = await self.conn.fetch(
            f"SELECT {_VIEW} FROM ticket_views WHERE workspace_id = $1 AND (owner = $2 OR shared)"  # noqa: S608
            " ORDER BY name, id LIMIT $3", workspace_id, caller, limit)
        return [_view(r) for r in rows]

    async def count_owned(self, workspace_id: str, owner: str) -> int:
        count: int = await self.conn.fetchval(
            "SELECT count(*) FROM ticket_views WHERE workspace_id = $1 AND owner = $2", workspace_id, owner)
        return count

    async def tickets(self, workspace_id: str, found: TicketFilter, caller: str, sort: str,
                      after: tuple[datetime, UUID] | None, limit: int) -> list[Ticket]:
        """A keyset page of the tickets ``found`` matches, in ``sort`` order."""
        query, args = page_query(workspace_id, found, caller, sort, after, limit)
        return [_ticket(r) for r in await self.conn.fetch(query, *args)]

    async def count(self, workspace_id: str, found: TicketFilter, caller: str, cap: int) -> int:
        """How many tickets ``found`` matches, counting at most ``cap`` + 1."""
        where = Conditions(workspace_id)
        filter_conditions(where, found, caller)
        query = (f"SELECT count(*) FROM (SELECT 1 FROM tickets WHERE {' AND '.join(where.sql)}"  # noqa: S608
                 f" LIMIT {where.arg(cap + 1)}) AS matched")
        count: int = await self.conn.fetchval(query, *where.args)
        return count

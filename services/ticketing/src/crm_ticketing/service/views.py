"""Saved views: create, read, change and delete them, list their tickets, count them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from crm_ticketing.domain.errors import NotFound, VersionMismatch
from crm_ticketing.domain.model import Ticket
from crm_ticketing.domain.views import (
    DEFAULT_SORT,
    MAX_VIEWS_PER_OWNER,
    SORTS,
    NotOwner,
    TicketFilter,
    TooManyViews,
    parse_filter,
    parse_view,
)
from crm_ticketing.store.views import View, ViewsStore
from crmkit.ids import uuid7
from crmkit.pagination import InvalidCursor, decode_cursor, encode_cursor
from crmkit.postgres import PgDatabase

MAX_PAGE = 100
# The views /v1/views lists and counts at once.
MAX_VISIBLE = 200
# Counts stop here: the answer says "more than this" instead of scanning every match.
COUNT_CAP = 10_000


@dataclass(frozen=True)
class ViewTickets:
    items: list[Ticket]
    next_cursor: str | None


@dataclass(frozen=True)
class ViewCount:
    view: View
    count: int
    capped: bool  # more than COUNT_CAP match; ``count`` is COUNT_CAP


class ViewsService:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def create(self, workspace_id: str, caller: str, raw: Any) -> View:
        spec = parse_view(raw, creating=True)
        filters = spec.filters or TicketFilter()
        now = datetime.now(UTC)
        assert spec.name is not None
        view = View(id=uuid7(), workspace_id=workspace_id, owner=caller, shared=bool(spec.shared),
                    name=spec.name, filters=filters.as_json(), sort=spec.sort or DEFAULT_SORT, version=1,
                    created_at=now, updated_at=now)
        async with self.db.unit_of_work() as uow:
            store = ViewsStore(uow.conn)
            if await store.count_owned(workspace_id, caller) >= MAX_VIEWS_PER_OWNER:
                raise TooManyViews()
            await store.insert(view)
        return view

    async def get(self, workspace_id: str, caller: str, view_id: UUID) -> View:
        async with self.db.pool.acquire() as conn:
            view = await ViewsStore(conn).get(workspace_id, view_id)
        return _visible(view, caller)

    async def visible(self, workspace_id: str, caller: str) -> list[View]:
        async with self.db.pool.acquire() as conn:
            return await ViewsStore(conn).visible(workspace_id, caller, MAX_VISIBLE)

    async def update(self, workspace_id: str, caller: str, view_id: UUID, raw: Any,
                     expected_version: int) -> View:
        spec = parse_view(raw, creating=False)
        async with self.db.unit_of_work() as uow:
            store = ViewsStore(uow.conn)
            view = _owned(_visible(await store.get(workspace_id, view_id, for_update=True), caller), caller)
            if view.version != expected_version:
                raise VersionMismatch(view.version)
            changed = replace(
                view,
                name=spec.name if spec.name is not None else view.name,
                shared=spec.shared if spec.shared is not None else view.shared,
                filters=spec.filters.as_json() if spec.filters is not None else view.filters,
                sort=spec.sort or view.sort)
            if changed == view:
                return view
            changed = replace(changed, version=view.version + 1, updated_at=datetime.now(UTC))
            await store.update(changed)
        return changed

    async def delete(self, workspace_id: str, caller: str, view_id: UUID, expected_version: int) -> None:
        async with self.db.unit_of_work() as uow:
            store = ViewsStore(uow.conn)
            view = _owned(_visible(await store.get(workspace_id, view_id, for_update=True), caller), caller)
            if view.version != expected_version:
                raise VersionMismatch(view.version)
            await store.delete(workspace_id, view_id)

    async def view_tickets(self, workspace_id: str, caller: str, view_id: UUID, cursor: str | None,
                           limit: int) -> ViewTickets:
        """A page of the tickets the view matches; the view is read on the same connection."""
        async with self.db.pool.acquire() as conn:
            store = ViewsStore(conn)
            view = _visible(await store.get(workspace_id, view_id), caller)
            return await _page(store, workspace_id, caller, parse_filter(view.filters), view.sort, cursor,
                               limit)

    async def find_tickets(self, workspace_id: str, caller: str, found: TicketFilter, sort: str,
                           cursor: str | None, limit: int) -> ViewTickets:
        async with self.db.pool.acquire() as conn:
            return await _page(ViewsStore(conn), workspace_id, caller, found, sort, cursor, limit)

    async def counts(self, workspace_id: str, caller: str) -> list[ViewCount]:
        """Every view the caller sees, with how many tickets it matches now (up to COUNT_CAP),
        on one connection."""
        async with self.db.pool.acquire() as conn:
            store = ViewsStore(conn)
            found: list[ViewCount] = []
            for view in await store.visible(workspace_id, caller, MAX_VISIBLE):
                count = await store.count(workspace_id, parse_filter(view.filters), caller, COUNT_CAP)
                found.append(ViewCount(view, min(count, COUNT_CAP), count > COUNT_CAP))
        return found


async def _page(store: ViewsStore, workspace_id: str, caller: str, found: TicketFilter, sort: str,
                cursor: str | None, limit: int) -> ViewTickets:
    """A page of the tickets ``found`` matches, in ``sort`` order; the cursor is the last row's
    sort value and id (crmkit.pagination: a 422 for one from another sort)."""
    assert sort in SORTS
    after: tuple[datetime, UUID] | None = None
    if cursor:
        stamp, ticket_id = decode_cursor(f"tickets{sort}", cursor, 2)
        try:
            after = (datetime.fromisoformat(str(stamp)), UUID(str(ticket_id)))
        except ValueError as exc:
            raise InvalidCursor() from exc
    limit = max(1, min(limit, MAX_PAGE))
    rows = await store.tickets(workspace_id, found, caller, sort, after, limit + 1)
    page = rows[:limit]
    if len(rows) <= limit:
        return ViewTickets(page, None)
    last = page[-1]
    value = last.created_at if sort.endswith("created_at") else last.updated_at
    return ViewTickets(page, encode_cursor(f"tickets{sort}", [value.isoformat() if value else None,
                                                               str(last.id)]))


def _visible(view: View | None, caller: str) -> View:
    """Another person's private view is as if it did not exist."""
    if view is None or (not view.shared and view.owner != caller):
        raise NotFound("view")
    return view


def _owned(view: View, caller: str) -> View:
    if view.owner != caller:
        raise NotOwner()
    return view

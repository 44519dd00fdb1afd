"""Linked tickets, followers and a workspace's ticketing settings."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from crm_ticketing.domain.errors import FieldError, InvalidFields, NotFound, VersionMismatch
from crm_ticketing.domain.follow_ups import LinkKind, WorkspaceSettings, parse_settings
from crm_ticketing.store.links import Link, LinksStore
from crm_ticketing.store.tickets import TicketsStore
from crmkit.postgres import PgDatabase

MAX_FOLLOWERS = 100


class TicketRelations:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def settings(self, workspace_id: str) -> WorkspaceSettings:
        async with self.db.pool.acquire() as conn:
            return await LinksStore(conn).settings(workspace_id)

    async def save_settings(self, workspace_id: str, raw: dict[str, Any], expected_version: int
                            ) -> WorkspaceSettings:
        """``expected_version`` is 0 while the workspace has the defaults."""
        async with self.db.unit_of_work() as uow:
            store = LinksStore(uow.conn)
            current = await store.settings(workspace_id)
            if current.version != expected_version:
                raise VersionMismatch(current.version)
            saved = parse_settings(raw, current)
            if not await store.save_settings(workspace_id, saved):
                raise VersionMismatch(current.version + 1)  # saved concurrently
        return saved

    async def link(self, workspace_id: str, actor: str, ticket_id: UUID, other_id: UUID) -> list[Link]:
        """Links two tickets of the workspace (NotFound for either outside it); linking them
        again changes nothing. Returns the ticket's links."""
        if ticket_id == other_id:
            raise InvalidFields([FieldError("ticket_id", "a ticket cannot be linked to itself")])
        async with self.db.unit_of_work() as uow:
            await _existing(TicketsStore(uow.conn), workspace_id, ticket_id)
            tickets = TicketsStore(uow.conn)
            if await tickets.get(workspace_id, other_id) is None:
                raise InvalidFields([FieldError("ticket_id", "no such ticket in this workspace")])
            store = LinksStore(uow.conn)
            await store.link(workspace_id, ticket_id, other_id, LinkKind.RELATED, actor)
            return await store.links(workspace_id, ticket_id)

    async def unlink(self, workspace_id: str, ticket_id: UUID, other_id: UUID) -> None:
        """NotFound unless an agent's link joins the two (follow-up links are kept)."""
        async with self.db.unit_of_work() as uow:
            if not await LinksStore(uow.conn).unlink(workspace_id, ticket_id, other_id):
                raise NotFound("link")

    async def links(self, workspace_id: str, ticket_id: UUID) -> list[Link]:
        async with self.db.pool.acquire() as conn:
            await _existing(TicketsStore(conn), workspace_id, ticket_id)
            return await LinksStore(conn).links(workspace_id, ticket_id)

    async def follow(self, workspace_id: str, ticket_id: UUID, agent: str) -> list[str]:
        async with self.db.unit_of_work() as uow:
            await _existing(TicketsStore(uow.conn), workspace_id, ticket_id)
            store = LinksStore(uow.conn)
            followers = await store.followers(workspace_id, ticket_id)
            if agent not in followers and len(followers) >= MAX_FOLLOWERS:
                raise InvalidFields([FieldError("agent", f"a ticket has at most {MAX_FOLLOWERS} followers")])
            await store.follow(workspace_id, ticket_id, agent)
            return await store.followers(workspace_id, ticket_id)

    async def unfollow(self, workspace_id: str, ticket_id: UUID, agent: str) -> list[str]:
        async with self.db.unit_of_work() as uow:
            await _existing(TicketsStore(uow.conn), workspace_id, ticket_id)
            store = LinksStore(uow.conn)
            await store.unfollow(workspace_id, ticket_id, agent)
            return await store.followers(workspace_id, ticket_id)

    async def followers(self, workspace_id: str, ticket_id: UUID) -> list[str]:
        async with self.db.pool.acquire() as conn:
            await _existing(TicketsStore(conn), workspace_id, ticket_id)
            return await LinksStore(conn).followers(workspace_id, ticket_id)


async def _existing(tickets: TicketsStore, workspace_id: str, ticket_id: UUID) -> None:
    if await tickets.get(workspace_id, ticket_id) is None:
        raise NotFound("ticket")

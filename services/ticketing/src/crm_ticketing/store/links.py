"""SQL for linked tickets, followers and a workspace's ticketing settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from crm_ticketing.domain.follow_ups import LinkKind, WorkspaceSettings


@dataclass(frozen=True)
class Link:
    ticket_id: UUID  # the other ticket
    kind: LinkKind
    # "to": this ticket links to it (this one is its follow-up); "from": it links to this one.
    direction: str
    created_by: str
    created_at: datetime


class LinksStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def settings(self, workspace_id: str) -> WorkspaceSettings:
        row = await self.conn.fetchrow(
            "SELECT reopen_window_days, version FROM ticketing_settings WHERE workspace_id = $1",
            workspace_id)
        return WorkspaceSettings(**dict(row)) if row else WorkspaceSettings()

    async def save_settings(self, workspace_id: str, settings: WorkspaceSettings) -> bool:
        """Writes ``settings`` if the stored version is the one before it; False otherwise."""
        saved = await self.conn.fetchval(
            "INSERT INTO ticketing_settings (workspace_id, reopen_window_days, version)"
            " VALUES ($1, $2, $3) ON CONFLICT (workspace_id) DO UPDATE"
            " SET reopen_window_days = EXCLUDED.reopen_window_days, version = EXCLUDED.version"
            " WHERE ticketing_settings.version = EXCLUDED.version - 1 RETURNING 1",
            workspace_id, settings.reopen_window_days, settings.version)
        return saved is not None

    async def link(self, workspace_id: str, ticket_id: UUID, linked_id: UUID, kind: LinkKind,
                   actor: str) -> bool:
        """False when the two are linked already (either way round)."""
        if await self.conn.fetchval(
            "SELECT 1 FROM ticket_links WHERE workspace_id = $1 AND ((ticket_id = $2 AND linked_id = $3)"
            " OR (ticket_id = $3 AND linked_id = $2))", workspace_id, ticket_id, linked_id):
            return False
        await self.conn.execute(
            "INSERT INTO ticket_links (workspace_id, ticket_id, linked_id, kind, created_by)"
            " VALUES ($1, $2, $3, $4, $5)", workspace_id, ticket_id, linked_id, kind.value, actor)
        return True

    async def unlink(self, workspace_id: str, ticket_id: UUID, linked_id: UUID) -> bool:
        """Removes an agent's link either way round; follow-up links stay."""
        status: str = await self.conn.execute(
            "DELETE FROM ticket_links WHERE workspace_id = $1 AND kind = 'related'"
            " AND ((ticket_id = $2 AND linked_id = $3) OR (ticket_id = $3 AND linked_id = $2))",
            workspace_id, ticket_id, linked_id)
        return status != "DELETE 0"

    async def links(self, workspace_id: str, ticket_id: UUID) -> list[Link]:
        rows = await self.conn.fetch(
            "SELECT linked_id AS other, kind, 'to' AS direction, created_by, created_at FROM ticket_links"
            " WHERE workspace_id = $1 AND ticket_id = $2"
            " UNION ALL SELECT ticket_id, kind, 'from', created_by, created_at FROM ticket_links"
            " WHERE workspace_id = $1 AND linked_id = $2 ORDER BY created_at, other",
            workspace_id, ticket_id)
        return [Link(r["other"], LinkKind(r["kind"]), r["direction"], r["created_by"], r["created_at"])
                for r in rows]

    async def follow(self, workspace_id: str, ticket_id: UUID, agent: str) -> None:
        await self.conn.execute(
            "INSERT INTO ticket_followers (workspace_id, ticket_id, agent) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING", workspace_id, ticket_id, agent)

    async def unfollow(self, workspace_id: str, ticket_id: UUID, agent: str) -> None:
        await self.conn.execute(
            "DELETE FROM ticket_followers WHERE workspace_id = $1 AND ticket_id = $2 AND agent = $3",
            workspace_id, ticket_id, agent)

    async def followers(self, workspace_id: str, ticket_id: UUID) -> list[str]:
        rows = await self.conn.fetch(
            "SELECT agent FROM ticket_followers WHERE workspace_id = $1 AND ticket_id = $2"
            " ORDER BY created_at, agent", workspace_id, ticket_id)
        return [r["agent"] for r in rows]

"""The only place with contacts' SQL. Every query is scoped by workspace."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from crm_contacts.domain.model import (
    Contact,
    ContactTimelineEntry,
    Identity,
    IdentityKind,
    TimelineEntry,
    TimelinePosition,
)


class ContactsStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def contact_of(self, workspace_id: str, identity: Identity) -> UUID | None:
        value: UUID | None = await self.conn.fetchval(
            "SELECT contact_id FROM identities WHERE workspace_id = $1 AND kind = $2 AND value = $3",
            workspace_id, identity.kind.value, identity.value,
        )
        return value

    async def claim_identity(self, workspace_id: str, identity: Identity, contact_id: UUID) -> bool:
        """Link the identity to ``contact_id`` unless it already belongs to someone. A concurrent
        claim of the same identity waits for the other transaction, then loses here."""
        row = await self.conn.fetchval(
            "INSERT INTO identities (workspace_id, kind, value, contact_id) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            workspace_id, identity.kind.value, identity.value, contact_id,
        )
        return row is not None

    async def insert_contact(self, workspace_id: str, contact_id: UUID, display_name: str) -> None:
        await self.conn.execute(
            "INSERT INTO contacts (id, workspace_id, display_name) VALUES ($1, $2, $3)",
            contact_id, workspace_id, display_name,
        )

    async def get(self, workspace_id: str, contact_id: UUID) -> Contact | None:
        row = await self.conn.fetchrow(
            "SELECT id, workspace_id, display_name, created_at, last_seen_at FROM contacts"
            " WHERE workspace_id = $1 AND id = $2",
            workspace_id, contact_id,
        )
        if row is None:
            return None
        identities = await self.conn.fetch(
            "SELECT kind, value FROM identities WHERE workspace_id = $1 AND contact_id = $2"
            " ORDER BY created_at, kind, value",
            workspace_id, contact_id,
        )
        return Contact(
            id=row["id"],
            workspace_id=row["workspace_id"],
            display_name=row["display_name"],
            identities=tuple(Identity(IdentityKind(r["kind"]), r["value"]) for r in identities),
            created_at=row["created_at"],
            last_seen_at=row["last_seen_at"],
        )

    async def exists(self, workspace_id: str, contact_id: UUID) -> bool:
        return bool(await self.conn.fetchval(
            "SELECT 1 FROM contacts WHERE workspace_id = $1 AND id = $2", workspace_id, contact_id
        ))

    async def add_timeline_entries(self, entries: list[tuple[str, ContactTimelineEntry]]) -> None:
        await self.conn.executemany(
            "INSERT INTO timeline_entries (workspace_id, entry_id, contact_id, kind, channel,"
            " direction, summary, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT DO NOTHING",
            [(workspace_id, e.entry.entry_id, e.contact_id, e.entry.kind, e.entry.channel,
              e.entry.direction, e.entry.summary, e.entry.occurred_at) for workspace_id, e in entries],
        )

    async def touch_last_seen(self, seen: dict[tuple[str, UUID], datetime]) -> None:
        """Move each (workspace, contact)'s last-seen time forward, never back."""
        await self.conn.executemany(
            "UPDATE contacts SET last_seen_at = GREATEST(COALESCE(last_seen_at, $3), $3)"
            " WHERE workspace_id = $1 AND id = $2",
            [(workspace_id, contact_id, at) for (workspace_id, contact_id), at in seen.items()],
        )

    async def timeline(
        self, workspace_id: str, contact_id: UUID, after: TimelinePosition | None, limit: int
    ) -> list[TimelineEntry]:
        if after is None:
            rows = await self.conn.fetch(
                "SELECT entry_id, kind, channel, direction, summary, occurred_at FROM timeline_entries"
                " WHERE workspace_id = $1 AND contact_id = $2"
                " ORDER BY occurred_at DESC, entry_id DESC LIMIT $3",
                workspace_id, contact_id, limit,
            )
        else:
            rows = await self.conn.fetch(
                "SELECT entry_id, kind, channel, direction, summary, occurred_at FROM timeline_entries"
                " WHERE workspace_id = $1 AND contact_id = $2 AND (occurred_at, entry_id) < ($3, $4)"
                " ORDER BY occurred_at DESC, entry_id DESC LIMIT $5",
                workspace_id, contact_id, after.occurred_at, after.entry_id, limit,
            )
        return [TimelineEntry(**dict(r)) for r in rows]

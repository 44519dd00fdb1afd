"""The only place with pipeline's SQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from crm_pipeline.domain.model import ActivityDelta, ContactActivity


class ActivityStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, deltas: list[ActivityDelta]) -> None:
        await self.conn.executemany(
            "INSERT INTO contact_activity (workspace_id, contact_id, interaction_count, last_activity_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (workspace_id, contact_id) DO UPDATE SET"
            " interaction_count = contact_activity.interaction_count + EXCLUDED.interaction_count,"
            " last_activity_at = GREATEST(contact_activity.last_activity_at, EXCLUDED.last_activity_at)",
            [(d.workspace_id, d.contact_id, d.count, d.last_at) for d in deltas],
        )

    async def fold(self, workspace_id: str, from_contact: UUID, into_contact: UUID) -> bool:
        """Add ``from_contact``'s activity to ``into_contact``'s and delete it; False when it
        had none."""
        return bool(await self.conn.fetchval(
            "WITH gone AS (DELETE FROM contact_activity WHERE workspace_id = $1 AND contact_id = $2"
            " RETURNING interaction_count, last_activity_at)"
            " INSERT INTO contact_activity (workspace_id, contact_id, interaction_count, last_activity_at)"
            " SELECT $1, $3, interaction_count, last_activity_at FROM gone"
            " ON CONFLICT (workspace_id, contact_id) DO UPDATE SET"
            " interaction_count = contact_activity.interaction_count + EXCLUDED.interaction_count,"
            " last_activity_at = GREATEST(contact_activity.last_activity_at, EXCLUDED.last_activity_at)"
            " RETURNING 1",
            workspace_id, from_contact, into_contact,
        ))

    async def get(self, workspace_id: str, contact_id: UUID) -> ContactActivity | None:
        row = await self.conn.fetchrow(
            "SELECT contact_id, interaction_count, last_activity_at FROM contact_activity"
            " WHERE workspace_id = $1 AND contact_id = $2",
            workspace_id, contact_id,
        )
        return ContactActivity(**dict(row)) if row else None

    async def of_contacts(self, workspace_id: str, contact_ids: Sequence[UUID], limit: int
                          ) -> list[dict[str, Any]]:
        """Every stored column of the contacts' activity rows, for their data export."""
        rows = await self.conn.fetch(
            "SELECT * FROM contact_activity WHERE workspace_id = $1 AND contact_id = ANY($2::uuid[])"
            " ORDER BY contact_id LIMIT $3",
            workspace_id, list(contact_ids), limit,
        )
        return [dict(r) for r in rows]

"""The only place with pipeline's SQL."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from crm_pipeline.domain.model import ContactActivity


class ActivityStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def count_interaction(self, workspace_id: str, contact_id: UUID, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO contact_activity (workspace_id, contact_id, interaction_count, last_activity_at)"
            " VALUES ($1, $2, 1, $3) ON CONFLICT (workspace_id, contact_id) DO UPDATE SET"
            " interaction_count = contact_activity.interaction_count + 1,"
            " last_activity_at = GREATEST(contact_activity.last_activity_at, EXCLUDED.last_activity_at)",
            workspace_id, contact_id, at,
        )

    async def get(self, workspace_id: str, contact_id: UUID) -> ContactActivity | None:
        row = await self.conn.fetchrow(
            "SELECT contact_id, interaction_count, last_activity_at FROM contact_activity"
            " WHERE workspace_id = $1 AND contact_id = $2",
            workspace_id, contact_id,
        )
        return ContactActivity(**dict(row)) if row else None

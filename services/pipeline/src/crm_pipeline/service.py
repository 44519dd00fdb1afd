"""Pipeline's use cases."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from crm_pipeline.domain.model import ContactActivity
from crm_pipeline.store.activity import ActivityStore
from crmkit.postgres import PgDatabase

ACTIVITY_CONSUMER = "pipeline.activity"


class PipelineService:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def record_interaction(self, workspace_id: str, event_id: str, contact_id: UUID,
                                 occurred_at: datetime) -> bool:
        """Count an interaction as the contact's activity, once per event."""
        async with self.db.unit_of_work() as uow:
            if not await uow.claim(ACTIVITY_CONSUMER, event_id):
                return False
            await ActivityStore(uow.conn).count_interaction(workspace_id, contact_id, occurred_at)
        return True

    async def contact_activity(self, workspace_id: str, contact_id: UUID) -> ContactActivity | None:
        async with self.db.pool.acquire() as conn:
            return await ActivityStore(conn).get(workspace_id, contact_id)

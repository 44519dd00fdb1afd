"""Pipeline's use cases."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from crm_pipeline.domain.model import ContactActivity, InteractionSeen, sum_activity
from crm_pipeline.store.activity import ActivityStore
from crmkit.kafka import Delivered
from crmkit.postgres import PgDatabase

ACTIVITY_CONSUMER = "pipeline.activity"


class PipelineService:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def record_interactions(self, items: Sequence[Delivered[InteractionSeen]]) -> int:
        """Count interactions as their contacts' activity, once per event, in one transaction;
        returns how many were new."""
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(ACTIVITY_CONSUMER, [d.event_id for d in items])
            seen = [(d.workspace_id, d.item) for d in items if d.event_id in fresh]
            await ActivityStore(uow.conn).add(sum_activity(seen))
        return len(seen)

    async def contact_activity(self, workspace_id: str, contact_id: UUID) -> ContactActivity | None:
        async with self.db.pool.acquire() as conn:
            return await ActivityStore(conn).get(workspace_id, contact_id)

"""Campaigns' use cases."""

from __future__ import annotations

from collections.abc import Sequence

from crm_campaigns.domain.model import ContactEngagement, InteractionSeen, sum_engagement
from crm_campaigns.store.engagement import add_engagement, get_engagement
from crmkit.kafka import Delivered
from crmkit.mongo import MongoDatabase

ENGAGEMENT_CONSUMER = "campaigns.engagement"


class CampaignsService:
    def __init__(self, db: MongoDatabase) -> None:
        self.db = db

    async def record_interactions(self, items: Sequence[Delivered[InteractionSeen]]) -> int:
        """Count interactions as their contacts' engagement, once per event, in one
        transaction; returns how many were new."""
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(ENGAGEMENT_CONSUMER, [d.event_id for d in items])
            seen = [(d.workspace_id, d.item) for d in items if d.event_id in fresh]
            await add_engagement(uow, sum_engagement(seen))
        return len(seen)

    async def contact_engagement(self, workspace_id: str, contact_id: str) -> ContactEngagement | None:
        return await get_engagement(self.db, workspace_id, contact_id)

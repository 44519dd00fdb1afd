"""Campaigns' use cases."""

from __future__ import annotations

from datetime import datetime

from crm_campaigns.domain.model import ContactEngagement
from crm_campaigns.store.engagement import count_interaction, get_engagement
from crmkit.mongo import MongoDatabase

ENGAGEMENT_CONSUMER = "campaigns.engagement"


class CampaignsService:
    def __init__(self, db: MongoDatabase) -> None:
        self.db = db

    async def record_interaction(self, workspace_id: str, event_id: str, contact_id: str,
                                 occurred_at: datetime) -> bool:
        """Count an interaction as the contact's engagement, once per event."""
        async with self.db.unit_of_work() as uow:
            if not await uow.claim(ENGAGEMENT_CONSUMER, event_id):
                return False
            await count_interaction(uow, workspace_id, contact_id, occurred_at)
        return True

    async def contact_engagement(self, workspace_id: str, contact_id: str) -> ContactEngagement | None:
        return await get_engagement(self.db, workspace_id, contact_id)

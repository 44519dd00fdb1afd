"""Campaigns' use cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

from crm_campaigns.domain.model import ContactEngagement, ContactMerge, InteractionSeen, sum_engagement
from crm_campaigns.store.engagement import (
    add_engagement,
    current_contacts,
    engagement_of,
    fold_engagement,
    get_engagement,
)
from crm_campaigns.store.erasure import repoint_contact
from crmkit.kafka import Delivered, PermanentError
from crmkit.mongo import MongoDatabase
from crmkit.personal_data import MAX_ITEMS

ENGAGEMENT_CONSUMER = "campaigns.engagement"
MERGES_CONSUMER = "campaigns.merges"


class CampaignsService:
    def __init__(self, db: MongoDatabase) -> None:
        self.db = db

    async def record_interactions(self, items: Sequence[Delivered[InteractionSeen]]) -> int:
        """Count interactions as their contacts' engagement, once per event, in one
        transaction; returns how many were new."""
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(ENGAGEMENT_CONSUMER, [d.event_id for d in items])
            claimed = [d for d in items if d.event_id in fresh]
            # An interaction of a contact merged away counts for its survivor.
            contacts = await current_contacts(uow, [(d.workspace_id, d.item.contact_id) for d in claimed])
            seen = [(d.workspace_id, replace(d.item, contact_id=contacts[d.workspace_id, d.item.contact_id]))
                    for d in claimed]
            await add_engagement(uow, sum_engagement(seen))
        return len(seen)

    async def merge_contacts(self, items: Sequence[Delivered[ContactMerge]]) -> int:
        """Fold each loser's engagement into its survivor's and redirect the loser's later
        interactions there, each merge in one transaction and once per event; returns how
        many merges were applied (a loser merged already is not merged again)."""
        applied = 0
        for delivered in items:
            workspace_id, merge = delivered.workspace_id, delivered.item
            async with self.db.unit_of_work() as uow:
                if not await uow.claim(MERGES_CONSUMER, delivered.event_id):
                    continue
                found = await current_contacts(uow, [(workspace_id, merge.survivor_id)])
                survivor = found[workspace_id, merge.survivor_id]
                if survivor == merge.loser_id:
                    raise PermanentError(f"merging {merge.loser_id} into {merge.survivor_id} would make a "
                                         f"cycle: {merge.survivor_id} was merged into {merge.loser_id}")
                if await fold_engagement(uow, workspace_id, merge.loser_id, survivor):
                    # The loser's sends, journey runs and tracking hits are the survivor's now.
                    await repoint_contact(uow, workspace_id, merge.loser_id, survivor)
                    applied += 1
        return applied

    async def contact_engagement(self, workspace_id: str, contact_id: str) -> ContactEngagement | None:
        return await get_engagement(self.db, workspace_id, contact_id)

    async def personal_data(self, workspace_id: str, contact_ids: list[UUID]
                            ) -> dict[str, list[dict[str, Any]]]:
        """Everything campaigns holds about a person (the contact and the ids merged into it),
        for their data export: their engagement. One more than ``MAX_ITEMS``, so that a cut
        shows."""
        ids = [str(i) for i in contact_ids]
        return {"engagement": await engagement_of(self.db, workspace_id, ids, MAX_ITEMS + 1)}

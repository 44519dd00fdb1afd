"""Pipeline's activity use cases: interactions counted per contact, contact merges, personal data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

from crm_pipeline.domain.model import ContactActivity, ContactMerge, InteractionSeen, sum_activity
from crm_pipeline.store.activity import ActivityStore
from crmkit.kafka import Delivered
from crmkit.personal_data import MAX_ITEMS
from crmkit.postgres import PgDatabase
from crmkit.redirects import ContactRedirects

ACTIVITY_CONSUMER = "pipeline.activity"
MERGES_CONSUMER = "pipeline.merges"


class PipelineService:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def record_interactions(self, items: Sequence[Delivered[InteractionSeen]]) -> int:
        """Count interactions as their contacts' activity, once per event, in one transaction;
        returns how many were new."""
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(ACTIVITY_CONSUMER, [d.event_id for d in items])
            claimed = [d for d in items if d.event_id in fresh]
            # An interaction of a contact merged away counts for its survivor.
            contacts = await ContactRedirects(uow.conn).resolve(
                (d.workspace_id, d.item.contact_id) for d in claimed)
            seen = [(d.workspace_id, replace(d.item, contact_id=contacts[d.workspace_id, d.item.contact_id]))
                    for d in claimed]
            await ActivityStore(uow.conn).add(sum_activity(seen))
        return len(seen)

    async def merge_contacts(self, items: Sequence[Delivered[ContactMerge]]) -> int:
        """Fold each loser's activity into its survivor's and redirect the loser's later
        interactions there, each merge in one transaction and once per event; returns how
        many merges moved activity."""
        folded = 0
        for delivered in items:
            merge = delivered.item
            async with self.db.unit_of_work() as uow:
                if not await uow.claim(MERGES_CONSUMER, delivered.event_id):
                    continue
                survivor = await ContactRedirects(uow.conn).merge(
                    delivered.workspace_id, merge.loser_id, merge.survivor_id)
                if survivor is not None and await ActivityStore(uow.conn).fold(
                        delivered.workspace_id, merge.loser_id, survivor):
                    folded += 1
        return folded

    async def contact_activity(self, workspace_id: str, contact_id: UUID) -> ContactActivity | None:
        async with self.db.pool.acquire() as conn:
            return await ActivityStore(conn).get(workspace_id, contact_id)

    async def personal_data(self, workspace_id: str, contact_ids: list[UUID]
                            ) -> dict[str, list[dict[str, Any]]]:
        """Everything pipeline holds about a person (the contact and the ids merged into it),
        for their data export: their activity. One more than ``MAX_ITEMS``, so that a cut shows."""
        async with self.db.pool.acquire() as conn:
            return {"activity": await ActivityStore(conn).of_contacts(workspace_id, contact_ids,
                                                                      MAX_ITEMS + 1)}

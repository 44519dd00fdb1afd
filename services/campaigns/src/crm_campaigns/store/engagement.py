"""The only place with campaigns' MongoDB queries. Every query is scoped by workspace."""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING

from crm_campaigns.domain.model import ContactEngagement
from crmkit.mongo import MongoDatabase, MongoUnitOfWork


async def prepare(database: MongoDatabase) -> None:
    await database.db.contact_engagement.create_index(
        [("workspace_id", ASCENDING), ("contact_id", ASCENDING)], unique=True
    )


async def count_interaction(uow: MongoUnitOfWork, workspace_id: str, contact_id: str,
                            at: datetime) -> None:
    await uow.db.contact_engagement.update_one(
        {"workspace_id": workspace_id, "contact_id": contact_id},
        {"$inc": {"interaction_count": 1}, "$max": {"last_interaction_at": at}},
        upsert=True,
        session=uow.session,
    )


async def get_engagement(database: MongoDatabase, workspace_id: str,
                         contact_id: str) -> ContactEngagement | None:
    doc = await database.db.contact_engagement.find_one(
        {"workspace_id": workspace_id, "contact_id": contact_id}
    )
    if doc is None:
        return None
    return ContactEngagement(doc["contact_id"], doc["interaction_count"], doc["last_interaction_at"])

"""The only place with campaigns' MongoDB queries. Every query is scoped by workspace."""

from __future__ import annotations

from pymongo import ASCENDING, UpdateOne

from crm_campaigns.domain.model import ContactEngagement, EngagementDelta
from crmkit.mongo import MongoDatabase, MongoUnitOfWork


async def prepare(database: MongoDatabase) -> None:
    await database.db.contact_engagement.create_index(
        [("workspace_id", ASCENDING), ("contact_id", ASCENDING)], unique=True
    )


async def add_engagement(uow: MongoUnitOfWork, deltas: list[EngagementDelta]) -> None:
    if not deltas:
        return
    await uow.db.contact_engagement.bulk_write([
        UpdateOne({"workspace_id": d.workspace_id, "contact_id": d.contact_id},
                  {"$inc": {"interaction_count": d.count}, "$max": {"last_interaction_at": d.last_at}},
                  upsert=True)
        for d in deltas
    ], ordered=False, session=uow.session)


async def get_engagement(database: MongoDatabase, workspace_id: str,
                         contact_id: str) -> ContactEngagement | None:
    doc = await database.db.contact_engagement.find_one(
        {"workspace_id": workspace_id, "contact_id": contact_id}
    )
    if doc is None:
        return None
    return ContactEngagement(doc["contact_id"], doc["interaction_count"], doc["last_interaction_at"])

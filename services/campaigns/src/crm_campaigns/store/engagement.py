"""The only place with campaigns' MongoDB queries. Every query is scoped by workspace.

A contact merged away keeps its document as a tombstone, ``{workspace_id, contact_id,
merged_into}``: the redirect its late interactions follow. Writing it is also what orders a
merge against a transaction counting for the loser at the same time: both write the loser's
document, so one of them fails with a write conflict and is tried again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import ASCENDING, UpdateOne

from crm_campaigns.domain.model import ContactEngagement, EngagementDelta
from crmkit.mongo import MongoDatabase, MongoUnitOfWork

ContactKey = tuple[str, str]
# Merges keep redirects flat; a longer chain is one a concurrent merge has not flattened yet.
_MAX_HOPS = 8
_LIVE = {"merged_into": {"$exists": False}}


async def prepare(database: MongoDatabase) -> None:
    await database.db.contact_engagement.create_index(
        [("workspace_id", ASCENDING), ("contact_id", ASCENDING)], unique=True
    )
    await database.db.contact_engagement.create_index(
        [("workspace_id", ASCENDING), ("merged_into", ASCENDING)],
        partialFilterExpression={"merged_into": {"$exists": True}},
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


async def current_contacts(uow: MongoUnitOfWork, contacts: Iterable[ContactKey]) -> dict[ContactKey, str]:
    """The contact each one stands for now: itself, or the survivor it was merged into."""
    answer = {key: key[1] for key in contacts}
    for _ in range(_MAX_HOPS):
        targets: dict[str, set[str]] = defaultdict(set)
        for (workspace_id, _), target in answer.items():
            targets[workspace_id].add(target)
        if not targets:
            return answer
        tombstones = {"$or": [{"workspace_id": ws, "contact_id": {"$in": sorted(ids)}}
                              for ws, ids in targets.items()],
                      "merged_into": {"$exists": True}}
        redirects = {
            (doc["workspace_id"], doc["contact_id"]): doc["merged_into"]
            async for doc in uow.db.contact_engagement.find(tombstones, session=uow.session)
        }
        if not redirects:
            return answer
        answer = {key: redirects.get((key[0], target), target) for key, target in answer.items()}
    raise RuntimeError(f"contact redirects longer than {_MAX_HOPS} hops: a cycle")


async def fold_engagement(uow: MongoUnitOfWork, workspace_id: str, loser_id: str, survivor_id: str) -> bool:
    """Add the loser's engagement to the survivor's, leave a tombstone redirecting to the
    survivor, and re-point the redirects to the loser. False when the loser was merged already."""
    engagement = uow.db.contact_engagement
    loser: dict[str, Any] = {"workspace_id": workspace_id, "contact_id": loser_id}
    found = await engagement.find_one(loser, session=uow.session)
    if found is not None and "merged_into" in found:
        return False
    await engagement.replace_one(loser, {**loser, "merged_into": survivor_id}, upsert=True,
                                 session=uow.session)
    if found is not None:
        await engagement.update_one(
            {"workspace_id": workspace_id, "contact_id": survivor_id},
            {"$inc": {"interaction_count": found["interaction_count"]},
             "$max": {"last_interaction_at": found["last_interaction_at"]}},
            upsert=True, session=uow.session)
    await engagement.update_many({"workspace_id": workspace_id, "merged_into": loser_id},
                                 {"$set": {"merged_into": survivor_id}}, session=uow.session)
    return True


async def get_engagement(database: MongoDatabase, workspace_id: str,
                         contact_id: str) -> ContactEngagement | None:
    doc = await database.db.contact_engagement.find_one(
        {"workspace_id": workspace_id, "contact_id": contact_id, **_LIVE}
    )
    if doc is None:
        return None
    return ContactEngagement(doc["contact_id"], doc["interaction_count"], doc["last_interaction_at"])


async def engagement_of(database: MongoDatabase, workspace_id: str, contact_ids: Sequence[str],
                        limit: int) -> list[dict[str, Any]]:
    """Every stored field of the contacts' engagement documents (a merged-away id's is its
    tombstone), for their data export."""
    cursor = database.db.contact_engagement.find(
        {"workspace_id": workspace_id, "contact_id": {"$in": list(contact_ids)}}, {"_id": 0},
    ).sort("contact_id", ASCENDING).limit(limit)
    return [doc async for doc in cursor]

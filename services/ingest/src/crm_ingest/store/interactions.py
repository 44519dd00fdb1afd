"""The only place with ingest's MongoDB queries. Every query is scoped by workspace."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pymongo import ASCENDING, DESCENDING

from crm_ingest.domain.interaction import Interaction
from crmkit.mongo import MongoDatabase, MongoUnitOfWork


async def prepare(database: MongoDatabase) -> None:
    """Indexes for every query ingest makes."""
    interactions = database.db.interactions
    await interactions.create_index([("workspace_id", ASCENDING), ("contact_id", ASCENDING),
                                     ("occurred_at", DESCENDING)])


def _to_doc(item: Interaction) -> dict[str, Any]:
    doc = asdict(item)
    doc["_id"] = doc.pop("id")
    doc["recipients"] = list(item.recipients)
    doc["references"] = list(item.references)
    return doc


def _from_doc(doc: dict[str, Any]) -> Interaction:
    fields = {k: v for k, v in doc.items() if k != "_id"}
    fields["recipients"] = tuple(fields["recipients"])
    fields["references"] = tuple(fields["references"])
    return Interaction(id=doc["_id"], **fields)


class InteractionsStore:
    def __init__(self, uow: MongoUnitOfWork) -> None:
        self.uow = uow

    async def existing(self, interaction_ids: list[str]) -> set[str]:
        """Which of these ids are stored (ids are derived with the workspace in them)."""
        cursor = self.uow.db.interactions.find(
            {"_id": {"$in": interaction_ids}}, {"_id": 1}, session=self.uow.session)
        return {doc["_id"] async for doc in cursor}

    async def insert_many(self, items: list[Interaction]) -> None:
        if items:
            await self.uow.db.interactions.insert_many([_to_doc(i) for i in items],
                                                       session=self.uow.session)


async def get_interaction(database: MongoDatabase, workspace_id: str,
                          interaction_id: str) -> Interaction | None:
    doc = await database.db.interactions.find_one({"_id": interaction_id, "workspace_id": workspace_id})
    return _from_doc(doc) if doc else None

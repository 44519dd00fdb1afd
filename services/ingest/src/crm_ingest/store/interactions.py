"""The only place with ingest's MongoDB queries. Every query is scoped by workspace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

import bson
from pymongo import ASCENDING, DESCENDING, UpdateOne

from crm_ingest.domain.interaction import Interaction
from crm_ingest.domain.message import DeliveryStatus, MediaRef
from crmkit.mongo import MongoDatabase, MongoUnitOfWork

# What a document holds beside the interaction (its delivery statuses) is not read back here.
_FIELDS = frozenset(f.name for f in fields(Interaction)) - {"id"}


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
    doc["media"] = [asdict(m) for m in item.media]
    return doc


def _from_doc(doc: dict[str, Any]) -> Interaction:
    values = {k: v for k, v in doc.items() if k in _FIELDS}
    values["recipients"] = tuple(values["recipients"])
    values["references"] = tuple(values["references"])
    values["media"] = tuple(MediaRef(**m) for m in values.get("media", ()))
    return Interaction(id=doc["_id"], **values)


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

    async def record_statuses(self, updates: Sequence[tuple[str, str, DeliveryStatus]]) -> int:
        """Set ``delivery.<status>_at`` (and a failure's ``delivery.error_code``) on stored
        interactions, given as (workspace, interaction id, status). Arriving out of order
        changes nothing: each status keeps its own time. Returns how many were found."""
        operations = []
        for workspace_id, interaction_id, status in updates:
            changes: dict[str, Any] = {f"delivery.{status.status}_at": status.at}
            if status.error_code:
                changes["delivery.error_code"] = status.error_code
            operations.append(UpdateOne({"_id": interaction_id, "workspace_id": workspace_id},
                                        {"$set": changes}))
        if not operations:
            return 0
        result = await self.uow.db.interactions.bulk_write(operations, ordered=False,
                                                            session=self.uow.session)
        return result.matched_count


async def get_interaction(database: MongoDatabase, workspace_id: str,
                          interaction_id: str) -> Interaction | None:
    doc = await database.db.interactions.find_one({"_id": interaction_id, "workspace_id": workspace_id})
    return _from_doc(doc) if doc else None


async def interactions_of(database: MongoDatabase, workspace_id: str, contact_ids: Sequence[str],
                          limit: int, max_bytes: int) -> list[dict[str, Any]]:
    """Every stored field of the contacts' interactions (bodies, media references, delivery
    statuses), oldest first, for their data export. Reading stops at ``limit`` documents or
    once they pass ``max_bytes``, so that long bodies are never all held at once."""
    cursor = database.db.interactions.find(
        {"workspace_id": workspace_id, "contact_id": {"$in": list(contact_ids)}},
    ).sort([("occurred_at", ASCENDING), ("_id", ASCENDING)]).limit(limit)
    found: list[dict[str, Any]] = []
    size = 0
    async for doc in cursor:
        size += len(bson.encode(doc))
        found.append({"id": doc.pop("_id"), **doc})
        if size > max_bytes:
            break
    return found

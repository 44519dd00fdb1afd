"""The only place with ingest's MongoDB queries on interactions, their bodies, attachments and
raw payloads. Every query is scoped by workspace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import bson
from pymongo import ASCENDING, DESCENDING, UpdateMany, UpdateOne

from crm_ingest.domain.interaction import AttachmentRef, Interaction
from crm_ingest.domain.message import Attachment, DeliveryStatus, MediaRef, Order, OrderItem, Reaction
from crmkit.mongo import MongoDatabase, MongoUnitOfWork

# What a document holds beside the interaction (delivery statuses, reactions, the HTML body) is
# read back only where it is asked for.
_FIELDS = frozenset(f.name for f in fields(Interaction)) - {"id"}
_SUMMARY = {"html": 0}
MAX_REACTIONS = 50


async def prepare(database: MongoDatabase) -> None:
    """Indexes for every query ingest makes."""
    db = database.db
    await db.interactions.create_index([("workspace_id", ASCENDING), ("contact_id", ASCENDING),
                                        ("occurred_at", DESCENDING), ("_id", DESCENDING)])
    await db.interactions.create_index([("workspace_id", ASCENDING), ("conversation_id", ASCENDING),
                                        ("occurred_at", ASCENDING)])
    await db.interactions.create_index([("workspace_id", ASCENDING), ("message_id", ASCENDING)])
    await db.interactions.create_index([("workspace_id", ASCENDING), ("references", ASCENDING)])
    await db.attachments.create_index([("workspace_id", ASCENDING), ("contact_id", ASCENDING)])
    await db.raw_payloads.create_index([("workspace_id", ASCENDING), ("contact_id", ASCENDING)])
    await db.raw_payloads.create_index([("workspace_id", ASCENDING), ("interaction_id", ASCENDING)])
    await db.contact_redirects.create_index([("workspace_id", ASCENDING), ("survivor_id", ASCENDING)])


def _to_doc(item: Interaction) -> dict[str, Any]:
    doc = asdict(item)
    doc["_id"] = doc.pop("id")
    doc["recipients"] = list(item.recipients)
    doc["references"] = list(item.references)
    doc["media"] = [asdict(m) for m in item.media]
    doc["attachments"] = [asdict(a) for a in item.attachments]
    doc["order"] = None if item.order is None else {**asdict(item.order),
                                                    "items": [asdict(i) for i in item.order.items]}
    return doc


def _from_doc(doc: dict[str, Any]) -> Interaction:
    values = {k: v for k, v in doc.items() if k in _FIELDS}
    values["recipients"] = tuple(values["recipients"])
    values["references"] = tuple(values["references"])
    values["media"] = tuple(MediaRef(**m) for m in values.get("media", ()))
    values["attachments"] = tuple(AttachmentRef(**a) for a in values.get("attachments", ()))
    order = values.get("order")
    if order is not None:
        values["order"] = Order(**{**order, "items": tuple(OrderItem(**i) for i in order["items"])})
    return Interaction(id=doc["_id"], **values)


@dataclass(frozen=True)
class StoredInteraction:
    """An interaction with what was recorded on it after it was stored."""

    interaction: Interaction
    delivery: dict[str, Any]  # "<status>_at" -> time, "error_code"
    reactions: list[dict[str, Any]]


def _stored(doc: dict[str, Any]) -> StoredInteraction:
    return StoredInteraction(_from_doc(doc), doc.get("delivery") or {}, doc.get("reactions") or [])


@dataclass(frozen=True)
class RawPayload:
    """An accepted raw message as its adapter received it (the raw archive)."""

    raw_id: str
    workspace_id: str
    contact_id: str
    channel: str
    source: str
    content_type: str
    payload: bytes
    received_at: datetime
    interaction_id: str


@dataclass(frozen=True)
class StatusTarget:
    """The stored interaction a delivery status or reaction landed on."""

    interaction_id: str
    contact_id: str
    channel: str
    metadata: dict[str, str]
    outbound_id: str


class InteractionsStore:
    def __init__(self, uow: MongoUnitOfWork) -> None:
        self.uow = uow
        self.db = uow.db
        self.session = uow.session

    async def existing(self, interaction_ids: list[str]) -> set[str]:
        """Which of these ids are stored (ids are derived with the workspace in them)."""
        cursor = self.db.interactions.find({"_id": {"$in": interaction_ids}}, {"_id": 1},
                                           session=self.session)
        return {doc["_id"] async for doc in cursor}

    async def insert_many(self, items: list[Interaction], html: dict[str, str] | None = None) -> None:
        """Store new interactions; ``html`` gives the sanitised HTML body of some, by id."""
        if items:
            docs = [_to_doc(i) for i in items]
            for doc in docs:
                if html and doc["_id"] in html:
                    doc["html"] = html[doc["_id"]]
            await self.db.interactions.insert_many(docs, session=self.session)

    async def insert_attachments(self, item: Interaction, attachments: Sequence[Attachment]) -> None:
        """The bytes of the attachments the interaction says are stored."""
        docs = [{"_id": f"{item.id}:{ref.index}", "workspace_id": item.workspace_id,
                 "contact_id": item.contact_id, "interaction_id": item.id, "index": ref.index,
                 "content_type": ref.content_type, "filename": ref.filename, "sha256": ref.sha256,
                 "data": bson.Binary(attachment.data)}
                for ref, attachment in zip(item.attachments, attachments, strict=True) if ref.stored]
        if docs:
            await self.db.attachments.insert_many(docs, session=self.session)

    async def archive_raw(self, payloads: Sequence[RawPayload]) -> None:
        """Keep accepted raw messages as they came. Only records claimed in this transaction
        are archived, so a raw id is never written twice."""
        if not payloads:
            return
        await self.db.raw_payloads.insert_many([
            {"_id": p.raw_id, "workspace_id": p.workspace_id, "contact_id": p.contact_id,
             "channel": p.channel, "source": p.source, "content_type": p.content_type,
             "payload": bson.Binary(p.payload), "received_at": p.received_at,
             "interaction_id": p.interaction_id}
            for p in payloads], session=self.session)

    async def targets(self, workspace_id: str, interaction_ids: Sequence[str]) -> dict[str, StatusTarget]:
        """The stored interactions of these ids, for statuses and reactions to land on."""
        cursor = self.db.interactions.find(
            {"_id": {"$in": list(interaction_ids)}, "workspace_id": workspace_id},
            {"contact_id": 1, "channel": 1, "metadata": 1, "outbound_id": 1}, session=self.session)
        return {doc["_id"]: StatusTarget(doc["_id"], doc.get("contact_id", ""), doc.get("channel", ""),
                                         doc.get("metadata") or {}, doc.get("outbound_id", ""))
                async for doc in cursor}

    async def record_statuses(self, updates: Sequence[tuple[str, str, DeliveryStatus]]) -> None:
        """Set ``delivery.<status>_at`` (and a failure's ``delivery.error_code``) on stored
        interactions, given as (workspace, interaction id, status). Arriving out of order
        changes nothing: each status keeps its own time."""
        operations = []
        for workspace_id, interaction_id, status in updates:
            changes: dict[str, Any] = {f"delivery.{status.status}_at": status.at}
            if status.error_code:
                changes["delivery.error_code"] = status.error_code
            operations.append(UpdateOne({"_id": interaction_id, "workspace_id": workspace_id},
                                        {"$set": changes}))
        if operations:
            await self.db.interactions.bulk_write(operations, ordered=False, session=self.session)

    async def record_reactions(self, updates: Sequence[tuple[str, str, Reaction]]) -> None:
        """Append reactions (workspace, interaction id, reaction) to their interactions, the
        latest ``MAX_REACTIONS`` kept."""
        operations = [
            UpdateOne({"_id": interaction_id, "workspace_id": workspace_id},
                      {"$push": {"reactions": {"$each": [{"emoji": r.emoji, "at": r.at}],
                                               "$slice": -MAX_REACTIONS}}})
            for workspace_id, interaction_id, r in updates]
        if operations:
            await self.db.interactions.bulk_write(operations, ordered=False, session=self.session)

    async def survivors(self, workspace_id: str, contact_ids: Sequence[str]) -> dict[str, str]:
        """Contacts that were merged away, mapped to the contact they live on in now."""
        cursor = self.db.contact_redirects.find(
            {"_id": {"$in": [f"{workspace_id}:{c}" for c in contact_ids]}}, session=self.session)
        return {doc["loser_id"]: doc["survivor_id"] async for doc in cursor}

    async def merged_into(self, workspace_id: str, contact_id: str) -> list[str]:
        """The contacts merged into this one over time."""
        cursor = self.db.contact_redirects.find({"workspace_id": workspace_id, "survivor_id": contact_id},
                                                {"loser_id": 1}, session=self.session)
        return [doc["loser_id"] async for doc in cursor]

    async def merge_contact(self, workspace_id: str, loser_id: str, survivor_id: str) -> int:
        """Move the loser's interactions, attachments and raw payloads to the survivor, and
        remember the merge so that an interaction resolved to the loser before the merge but
        stored after it lands on the survivor too. Earlier merges into the loser follow it."""
        await self.db.contact_redirects.bulk_write([
            UpdateOne({"_id": f"{workspace_id}:{loser_id}"},
                      {"$set": {"workspace_id": workspace_id, "loser_id": loser_id,
                                "survivor_id": survivor_id}}, upsert=True),
            UpdateMany({"workspace_id": workspace_id, "survivor_id": loser_id},
                       {"$set": {"survivor_id": survivor_id}}),
        ], ordered=True, session=self.session)
        moved = await self.db.interactions.update_many(
            {"workspace_id": workspace_id, "contact_id": loser_id},
            {"$set": {"contact_id": survivor_id}}, session=self.session)
        for collection in (self.db.attachments, self.db.raw_payloads):
            await collection.update_many({"workspace_id": workspace_id, "contact_id": loser_id},
                                         {"$set": {"contact_id": survivor_id}}, session=self.session)
        return int(moved.modified_count)

    async def erase_contact(self, workspace_id: str, contact_ids: Sequence[str]) -> tuple[int, list[str]]:
        """Delete everything stored of these contacts (a person and the ids merged into them):
        interactions with their bodies, attachments and raw payloads. Returns how many
        interactions went, and the chat visitor ids they were sent from (so that the chat
        transcripts go too)."""
        scope = {"workspace_id": workspace_id, "contact_id": {"$in": list(contact_ids)}}
        visitors = [doc["sender"] async for doc in self.db.interactions.find(
            {**scope, "channel": "chat", "direction": "inbound"}, {"sender": 1}, session=self.session)]
        deleted = await self.db.interactions.delete_many(scope, session=self.session)
        await self.db.attachments.delete_many(scope, session=self.session)
        await self.db.raw_payloads.delete_many(scope, session=self.session)
        return int(deleted.deleted_count), sorted(set(visitors))


class InteractionsReader:
    """Reads outside a transaction."""

    def __init__(self, database: MongoDatabase) -> None:
        self.db = database.db

    async def get(self, workspace_id: str, interaction_id: str) -> StoredInteraction | None:
        doc = await self.db.interactions.find_one({"_id": interaction_id, "workspace_id": workspace_id},
                                                  _SUMMARY)
        return _stored(doc) if doc else None

    async def survivor(self, workspace_id: str, contact_id: str) -> str:
        doc = await self.db.contact_redirects.find_one({"_id": f"{workspace_id}:{contact_id}"})
        return str(doc["survivor_id"]) if doc else contact_id

    async def of_contact(self, workspace_id: str, contact_id: str, after: tuple[datetime, str] | None,
                         limit: int, channel: str | None = None) -> list[StoredInteraction]:
        """A contact's interactions, newest first (the timeline), after a (time, id) cursor."""
        query: dict[str, Any] = {"workspace_id": workspace_id, "contact_id": contact_id}
        if channel:
            query["channel"] = channel
        if after is not None:
            at, last_id = after
            query["$or"] = [{"occurred_at": {"$lt": at}}, {"occurred_at": at, "_id": {"$lt": last_id}}]
        cursor = self.db.interactions.find(query, _SUMMARY).sort(
            [("occurred_at", DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return [_stored(doc) async for doc in cursor]

    async def thread(self, workspace_id: str, item: Interaction, limit: int) -> list[StoredInteraction]:
        """The interactions of the conversation ``item`` is part of, oldest first: by
        conversation id on chat and social channels, by the thread's first message id on email
        (its References, else In-Reply-To, else its own Message-ID)."""
        query: dict[str, Any] = {"workspace_id": workspace_id}
        if item.conversation_id:
            query["conversation_id"] = item.conversation_id
        else:
            root = (item.references[0] if item.references else item.in_reply_to) or item.message_id
            query["channel"] = item.channel
            query["$or"] = [{"message_id": root}, {"references": root}, {"in_reply_to": root}]
        cursor = self.db.interactions.find(query, _SUMMARY).sort(
            [("occurred_at", ASCENDING), ("_id", ASCENDING)]).limit(limit)
        return [_stored(doc) async for doc in cursor]

    async def html(self, workspace_id: str, interaction_id: str) -> str | None:
        doc = await self.db.interactions.find_one({"_id": interaction_id, "workspace_id": workspace_id},
                                                  {"html": 1})
        return None if doc is None else str(doc.get("html") or "")

    async def attachment(self, workspace_id: str, interaction_id: str,
                         index: int) -> tuple[str, str, bytes] | None:
        """(filename, content type, bytes) of a stored attachment."""
        doc = await self.db.attachments.find_one({"_id": f"{interaction_id}:{index}",
                                                  "workspace_id": workspace_id})
        if doc is None:
            return None
        return str(doc["filename"]), str(doc["content_type"]), bytes(doc["data"])

    async def raw(self, workspace_id: str, interaction_id: str) -> RawPayload | None:
        doc = await self.db.raw_payloads.find_one({"workspace_id": workspace_id,
                                                   "interaction_id": interaction_id})
        if doc is None:
            return None
        return RawPayload(raw_id=doc["_id"], workspace_id=doc["workspace_id"], contact_id=doc["contact_id"],
                          channel=doc["channel"], source=doc["source"], content_type=doc["content_type"],
                          payload=bytes(doc["payload"]), received_at=doc["received_at"],
                          interaction_id=doc["interaction_id"])

    async def personal_data(self, workspace_id: str, contact_ids: Sequence[str],
                            limit: int, max_bytes: int) -> list[dict[str, Any]]:
        """Every stored field of the contacts' interactions (bodies, media references, delivery
        statuses), oldest first, for their data export. Reading stops at ``limit`` documents or
        once they pass ``max_bytes``, so that long bodies are never all held at once."""
        cursor = self.db.interactions.find(
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

"""The ``outbound`` collection: one document per OutboundMessage ingest was asked to deliver,
keyed by the workspace and the requester's id, so that the same request is delivered once.

``state`` is ``pending`` (being tried; ``attempts`` and ``last_error`` say how it goes), then
``sent`` (with the interaction it became) or ``failed`` (with the reason); both are final.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from crmkit.ids import derived_id
from crmkit.mongo import MongoDatabase, MongoUnitOfWork

PENDING, SENT, FAILED = "pending", "sent", "failed"


@dataclass(frozen=True)
class OutboundState:
    state: str
    attempts: int
    first_attempt_at: datetime
    last_error: str = ""
    interaction_id: str = ""


def _key(workspace_id: str, request_id: str) -> str:
    # Derived, so that no workspace id or request id can make another pair's key.
    return str(derived_id("outbound", workspace_id, request_id))


def _state(doc: dict[str, Any]) -> OutboundState:
    return OutboundState(state=doc["state"], attempts=doc.get("attempts", 0),
                         first_attempt_at=doc["first_attempt_at"], last_error=doc.get("last_error", ""),
                         interaction_id=doc.get("interaction_id", ""))


class OutboundStore:
    """Reads and the attempt counter outside transactions; the final states inside the unit
    of work that also writes the interaction and the events."""

    def __init__(self, database: MongoDatabase) -> None:
        self.collection = database.db.outbound

    async def get(self, workspace_id: str, request_id: str) -> OutboundState | None:
        doc = await self.collection.find_one({"_id": _key(workspace_id, request_id),
                                              "workspace_id": workspace_id})
        return _state(doc) if doc else None

    async def begin_attempt(self, workspace_id: str, request_id: str, channel: str,
                            now: datetime, contact_id: str = "") -> OutboundState:
        """Count one more attempt (the first one creates the document, pending)."""
        doc = await self.collection.find_one_and_update(
            {"_id": _key(workspace_id, request_id)},
            {"$inc": {"attempts": 1},
             "$set": {"last_attempt_at": now},
             "$setOnInsert": {"workspace_id": workspace_id, "request_id": request_id, "channel": channel,
                              "contact_id": contact_id, "state": PENDING, "first_attempt_at": now}},
            upsert=True, return_document=ReturnDocument.AFTER)
        assert doc is not None  # upserted
        return _state(doc)

    async def note_error(self, workspace_id: str, request_id: str, error: str) -> None:
        await self.collection.update_one(
            {"_id": _key(workspace_id, request_id), "workspace_id": workspace_id, "state": PENDING},
            {"$set": {"last_error": error}})

    @staticmethod
    async def mark_sent(uow: MongoUnitOfWork, workspace_id: str, request_id: str, interaction_id: str,
                        provider_message_id: str, at: datetime) -> bool:
        """Pending -> sent; False when it was not pending (another worker finished it)."""
        result = await uow.db.outbound.update_one(
            {"_id": _key(workspace_id, request_id), "workspace_id": workspace_id, "state": PENDING},
            {"$set": {"state": SENT, "sent_at": at, "interaction_id": interaction_id,
                      "provider_message_id": provider_message_id},
             "$unset": {"last_error": ""}},
            session=uow.session)
        return result.matched_count == 1

    @staticmethod
    async def mark_failed(uow: MongoUnitOfWork, workspace_id: str, request_id: str, error: str,
                          at: datetime) -> bool:
        """Pending -> failed; False when it was not pending."""
        result = await uow.db.outbound.update_one(
            {"_id": _key(workspace_id, request_id), "workspace_id": workspace_id, "state": PENDING},
            {"$set": {"state": FAILED, "failed_at": at, "last_error": error}},
            session=uow.session)
        return result.matched_count == 1


async def erase_outbound(uow: MongoUnitOfWork, workspace_id: str, contact_ids: list[str],
                         visitors: list[str]) -> None:
    """An erased person's delivery records lose what names them (their errors may quote an
    address); the records stay, so that a redelivered request is still known and not sent to
    the erased person again."""
    await uow.db.outbound.update_many(
        {"workspace_id": workspace_id, "contact_id": {"$in": contact_ids}},
        {"$unset": {"contact_id": "", "last_error": ""}, "$set": {"erased": True}},
        session=uow.session)

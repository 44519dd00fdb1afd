"""Sends and the suppression list. The collections and indexes are made by
``store.campaigns.prepare``; the shapes are described there (others rely on them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING

from crm_campaigns.store.campaigns import address_hash
from crmkit.mongo import MongoDatabase, MongoUnitOfWork


def send_doc(*, send_id: str, workspace_id: str, campaign_id: str, contact_id: str, address: str,
             status: str, now: datetime, reason: str = "", variant: str = "") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": send_id, "workspace_id": workspace_id, "campaign_id": campaign_id, "variant": variant,
        "contact_id": contact_id, "address": address, "status": status, "reason": reason,
        "created_at": now, "updated_at": now,
    }
    return doc


async def existing_sends(uow: MongoUnitOfWork, workspace_id: str, campaign_id: str,
                         contact_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The campaign's sends to these contacts already made, by contact id (``_id``, status,
    variant and address only). Read as one range of the unique index, from the lowest contact
    id to the highest: a batch of the audience is such a range, and a range with no sends in
    it (a first pass) costs the server one seek instead of one per contact."""
    if not contact_ids:
        return {}
    wanted = set(contact_ids)
    cursor = uow.db.sends.find({"workspace_id": workspace_id, "campaign_id": campaign_id,
                                "contact_id": {"$gte": min(wanted), "$lte": max(wanted)}},
                               {"contact_id": 1, "status": 1, "variant": 1, "address": 1},
                               session=uow.session)
    return {d["contact_id"]: d async for d in cursor if d["contact_id"] in wanted}


async def insert_sends(uow: MongoUnitOfWork, docs: list[dict[str, Any]]) -> None:
    if docs:
        await uow.db.sends.insert_many(docs, ordered=True, session=uow.session)


async def fail_queued(database: MongoDatabase, reasons: Mapping[str, str], at: datetime) -> None:
    """Sends whose message can never be handed over (larger than the broker takes) fail with
    the reason, so that they stop counting as queued."""
    for send_id, reason in reasons.items():
        await database.db.sends.update_one(
            {"_id": send_id, "status": "queued"},
            {"$set": {"status": "failed", "reason": reason[:500], "updated_at": at, "failed_at": at}})


async def suppressed(uow: MongoUnitOfWork, workspace_id: str, addresses: Sequence[str]) -> dict[str, str]:
    """The suppression reason of each suppressed address (by its normalised hash)."""
    hashes = {address_hash(a): a for a in addresses}
    cursor = uow.db.suppression.find({"workspace_id": workspace_id, "hash": {"$in": list(hashes)}},
                                     session=uow.session)
    return {hashes[d["hash"]]: d["reason"] async for d in cursor}


async def suppress(uow: MongoUnitOfWork, workspace_id: str, address: str, reason: str, at: datetime) -> None:
    """Add the address to the workspace's suppression list (the first reason stays)."""
    digest = address_hash(address)
    await uow.db.suppression.update_one(
        {"workspace_id": workspace_id, "hash": digest},
        {"$setOnInsert": {"_id": f"{workspace_id}:{digest}", "workspace_id": workspace_id,
                          "hash": digest, "reason": reason, "at": at}},
        upsert=True, session=uow.session)


async def get_send(uow: MongoUnitOfWork, send_id: str) -> dict[str, Any] | None:
    return await uow.db.sends.find_one({"_id": send_id}, session=uow.session)


# A status only moves forward: a late "sent" never overwrites "delivered" or "bounced".
_RANK = {"queued": 0, "suppressed": 0, "sent": 1, "delivered": 2, "failed": 3, "bounced": 3}


def advances(current: str, new: str) -> bool:
    return _RANK.get(new, 0) > _RANK.get(current, 0)


async def set_status(uow: MongoUnitOfWork, send_id: str, status: str, at: datetime, error: str = "") -> None:
    update: dict[str, Any] = {"status": status, "updated_at": at, f"{status}_at": at}
    if error:
        update["reason"] = error
    await uow.db.sends.update_one({"_id": send_id}, {"$set": update}, session=uow.session)


async def progress(database: MongoDatabase, workspace_id: str, campaign_id: str) -> dict[str, int]:
    """How many sends of the campaign are in each status."""
    counts = {s: 0 for s in ("queued", "sent", "delivered", "bounced", "failed", "suppressed")}
    cursor = await database.db.sends.aggregate([
        {"$match": {"workspace_id": workspace_id, "campaign_id": campaign_id}},
        {"$group": {"_id": "$status", "n": {"$sum": 1}}},
    ])
    async for row in cursor:
        counts[row["_id"]] = row["n"]
    return counts


async def sends_of(database: MongoDatabase, workspace_id: str, campaign_id: str,
                   limit: int = 1000) -> list[dict[str, Any]]:
    cursor = database.db.sends.find({"workspace_id": workspace_id, "campaign_id": campaign_id}
                                    ).sort("contact_id", ASCENDING).limit(limit)
    return [d async for d in cursor]

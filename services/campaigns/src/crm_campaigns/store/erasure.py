"""A person's erasure and merges across campaigns' collections: the queries, all in the
caller's unit of work. Every query is scoped by workspace.

What holds a person: ``sends`` (their address, by ``contact_id``), ``engagements`` (tracking
hits, by ``contact_id`` or by the send they were for), ``journey_runs`` (by ``contact_id``),
``contact_engagement`` (their interaction count) and ``conversions`` (their deals won and
orders after a click: kept for the reports, without the contact id). What stays of an erased
person is one ``suppression`` document per address, holding only the address's hash.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crmkit.mongo import MongoUnitOfWork

# Collections keyed by the contact, re-pointed when contacts merges two of them, with the field
# that is unique per contact in each.
_BY_CONTACT = {"sends": "campaign_id", "journey_runs": "journey_id", "engagements": "", "conversions": ""}


async def merged_into(uow: MongoUnitOfWork, workspace_id: str, contact_id: str) -> list[str]:
    """The contacts merged into ``contact_id`` (their engagement tombstones name it)."""
    cursor = uow.db.contact_engagement.find(
        {"workspace_id": workspace_id, "merged_into": contact_id}, {"contact_id": 1}, session=uow.session)
    return [doc["contact_id"] async for doc in cursor]


async def addresses_of(uow: MongoUnitOfWork, workspace_id: str, contact_ids: list[str]) -> set[str]:
    """Every address campaigns sent (or would have sent) to these contacts."""
    cursor = uow.db.sends.find({"workspace_id": workspace_id, "contact_id": {"$in": contact_ids}},
                               {"address": 1}, session=uow.session)
    return {doc["address"] async for doc in cursor if doc.get("address")}


async def erase_contacts(uow: MongoUnitOfWork, workspace_id: str, contact_ids: list[str]) -> int:
    """Delete every document of these contacts; returns how many send documents went."""
    scope = {"workspace_id": workspace_id, "contact_id": {"$in": contact_ids}}
    send_ids = [doc["_id"] async for doc in uow.db.sends.find(scope, {"_id": 1}, session=uow.session)]
    await uow.db.engagements.delete_many(
        {"workspace_id": workspace_id, "$or": [{"contact_id": {"$in": contact_ids}},
                                               {"send_id": {"$in": send_ids}}]}, session=uow.session)
    await uow.db.journey_runs.delete_many(scope, session=uow.session)
    # A conversion stays counted in its campaign's report, but no longer names the person.
    await uow.db.conversions.update_many(scope, {"$set": {"contact_id": ""}}, session=uow.session)
    await uow.db.contact_engagement.delete_many(scope, session=uow.session)
    deleted = await uow.db.sends.delete_many(scope, session=uow.session)
    return deleted.deleted_count


async def suppress_erased(uow: MongoUnitOfWork, workspace_id: str, hashes: set[str]) -> None:
    """Keep each hash (``store.campaigns.address_hash``) on the suppression list with the reason
    ``erased``; an entry there for another reason becomes ``erased``, the reason that must
    outlive the person."""
    now = datetime.now(UTC)
    for digest in sorted(hashes):
        await uow.db.suppression.update_one(
            {"_id": f"{workspace_id}:{digest}"},
            {"$set": {"workspace_id": workspace_id, "hash": digest, "reason": "erased", "at": now}},
            upsert=True, session=uow.session)


async def repoint_contact(uow: MongoUnitOfWork, workspace_id: str, loser_id: str, survivor_id: str) -> None:
    """Give the loser's sends, journey runs and tracking hits to the survivor. A send or run
    the survivor already has for the same campaign or journey (the unique indexes) keeps the
    loser's id: it is still found through the engagement tombstone naming the survivor. (A
    duplicate key would abort the transaction, so the conflicts are left out up front.)"""
    for name, unique_by in _BY_CONTACT.items():
        collection = uow.db[name]
        loser: dict[str, Any] = {"workspace_id": workspace_id, "contact_id": loser_id}
        if unique_by:
            survivor = {"workspace_id": workspace_id, "contact_id": survivor_id}
            taken = await collection.distinct(unique_by, survivor, session=uow.session)
            loser[unique_by] = {"$nin": taken}
        await collection.update_many(loser, {"$set": {"contact_id": survivor_id}}, session=uow.session)

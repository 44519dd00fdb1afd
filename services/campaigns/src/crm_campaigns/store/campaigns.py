"""Campaigns' collections and their indexes: ``prepare`` creates them all.

OTHERS RELY ON THIS MODULE (tracking, reports, A/B variants, journeys): the collection names
and document shapes below are a contract inside the service; add fields, never rename.

- ``templates``: ``_id`` template id, workspace_id, name, subject, html, text, fields (custom
  field keys allowed as ``contact.custom.<key>``), version, created_at, updated_at.
- ``campaigns``: ``_id`` campaign id, workspace_id, name, template_id, audience {segments,
  exclude}, status draft|scheduled|sending|paused|cancelled|sent, schedule_at, throttle_per_minute,
  quiet_hours {start, end, time_zone} | None, version, created_at, updated_at, started_at,
  finished_at.
- ``campaign_progress``: ``_id`` campaign id, the sender's checkpoint (``pass``, ``after``: the
  last contact id handled in this pass, ``deferred_until``: when recipients held back by quiet
  hours may be tried again), written in the transaction of each batch. Apart from
  ``campaigns`` so that the sender never conflicts with a pause or cancel.
- ``campaign_handed``: ``_id`` campaign id, ``pass``, ``handed``: the last contact id of that
  pass whose message the broker has acknowledged (behind ``after`` only while batches are
  between their commit and their hand-over). Written outside any transaction while the next
  batch's transaction runs, so in a document of its own.
- ``campaign_leases``: ``_id`` campaign id, the sender's lease (``owner``, ``until``), renewed
  between batches while a batch's transaction runs, so in a document of its own.
- ``sends``: one per campaign x recipient, ``_id`` send id (uuid7 str), workspace_id,
  campaign_id, variant ("" for none), contact_id, address, status
  queued|sent|delivered|bounced|failed|suppressed, reason (why suppressed / the error),
  created_at, updated_at, sent_at, delivered_at, bounced_at; open/click counters are the
  tracking helper's. The unique (workspace_id, campaign_id, contact_id) index is what makes
  sending a campaign twice to anyone impossible.
- ``suppression``: ``_id`` "<workspace_id>:<hash>", workspace_id, hash (``address_hash`` of the
  normalised address), reason unsubscribed|bounced|complained|erased, at.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure

from crm_campaigns.domain.model import Audience, Campaign, QuietHours
from crmkit.mongo import MongoDatabase, MongoUnitOfWork


async def prepare(database: MongoDatabase) -> None:
    db = database.db
    await db.templates.create_index([("workspace_id", ASCENDING), ("_id", ASCENDING)])
    await db.campaigns.create_index([("workspace_id", ASCENDING), ("created_at", DESCENDING)])
    await db.campaigns.create_index([("status", ASCENDING), ("schedule_at", ASCENDING)])
    await db.sends.create_index(
        [("workspace_id", ASCENDING), ("campaign_id", ASCENDING), ("contact_id", ASCENDING)], unique=True)
    # Every read of a campaign's sends (progress, reports, A/B counts) goes through the unique
    # index's (workspace_id, campaign_id) prefix. A (workspace, campaign, status) index made
    # before was dropped: it cost each of a fan-out's inserts a fourth index for no query.
    with contextlib.suppress(OperationFailure):
        await db.sends.drop_index("workspace_id_1_campaign_id_1_status_1")
    await db.sends.create_index([("workspace_id", ASCENDING), ("contact_id", ASCENDING)])
    await db.suppression.create_index([("workspace_id", ASCENDING), ("hash", ASCENDING)], unique=True)


def normalise_address(address: str) -> str:
    return address.strip().lower()


def address_hash(address: str) -> str:
    """The suppression list's key for an address: sha256 of the trimmed, lower-cased address."""
    return hashlib.sha256(normalise_address(address).encode()).hexdigest()


def campaign_of(doc: dict[str, Any]) -> Campaign:
    quiet = doc.get("quiet_hours")
    return Campaign(
        id=doc["_id"], workspace_id=doc["workspace_id"], name=doc["name"],
        template_id=doc["template_id"],
        audience=Audience(tuple(doc["audience"]["segments"]), tuple(doc["audience"].get("exclude", []))),
        status=doc["status"], schedule_at=doc.get("schedule_at"),
        throttle_per_minute=doc.get("throttle_per_minute"),
        quiet_hours=QuietHours(quiet["start"], quiet["end"], quiet["time_zone"]) if quiet else None,
        version=doc["version"], created_at=doc["created_at"], updated_at=doc["updated_at"],
        started_at=doc.get("started_at"), finished_at=doc.get("finished_at"))


def campaign_doc(campaign: Campaign) -> dict[str, Any]:
    q = campaign.quiet_hours
    return {
        "_id": campaign.id, "workspace_id": campaign.workspace_id, "name": campaign.name,
        "template_id": campaign.template_id,
        "audience": {"segments": list(campaign.audience.segments),
                     "exclude": list(campaign.audience.exclude)},
        "status": campaign.status, "schedule_at": campaign.schedule_at,
        "throttle_per_minute": campaign.throttle_per_minute,
        "quiet_hours": {"start": q.start, "end": q.end, "time_zone": q.time_zone} if q else None,
        "version": campaign.version, "created_at": campaign.created_at, "updated_at": campaign.updated_at,
        "started_at": campaign.started_at, "finished_at": campaign.finished_at,
    }


async def insert_campaign(uow: MongoUnitOfWork, campaign: Campaign) -> None:
    await uow.db.campaigns.insert_one(campaign_doc(campaign), session=uow.session)


async def get_campaign(database: MongoDatabase, workspace_id: str, campaign_id: str,
                       uow: MongoUnitOfWork | None = None) -> Campaign | None:
    db = uow.db if uow else database.db
    doc = await db.campaigns.find_one({"_id": campaign_id, "workspace_id": workspace_id},
                                      session=uow.session if uow else None)
    return campaign_of(doc) if doc else None


async def replace_campaign(uow: MongoUnitOfWork, campaign: Campaign, expected_version: int) -> bool:
    """Write the campaign if it is still at ``expected_version``; False when it changed."""
    found = await uow.db.campaigns.find_one_and_update(
        {"_id": campaign.id, "workspace_id": campaign.workspace_id, "version": expected_version},
        {"$set": {k: v for k, v in campaign_doc(campaign).items() if k != "_id"}},
        return_document=ReturnDocument.AFTER, session=uow.session)
    return found is not None


async def delete_campaign(uow: MongoUnitOfWork, workspace_id: str, campaign_id: str) -> bool:
    result = await uow.db.campaigns.delete_one({"_id": campaign_id, "workspace_id": workspace_id},
                                               session=uow.session)
    return result.deleted_count == 1


async def list_campaigns(database: MongoDatabase, workspace_id: str, limit: int,
                         after: str | None) -> list[Campaign]:
    query: dict[str, Any] = {"workspace_id": workspace_id}
    if after:
        query["_id"] = {"$lt": after}
    cursor = database.db.campaigns.find(query).sort("_id", DESCENDING).limit(limit)
    return [campaign_of(d) async for d in cursor]


async def due_campaigns(database: MongoDatabase, now: datetime, limit: int = 50) -> list[Campaign]:
    """Campaigns the sender should work on: sending ones, and scheduled ones now due."""
    cursor = database.db.campaigns.find({"$or": [
        {"status": "sending"},
        {"status": "scheduled", "schedule_at": {"$lte": now}},
    ]}).sort("_id", ASCENDING).limit(limit)
    return [campaign_of(d) async for d in cursor]


async def get_checkpoint(database: MongoDatabase, campaign_id: str) -> dict[str, Any]:
    """The sender's checkpoint, with ``handed`` when the broker has acknowledged any of the
    pass's messages."""
    doc = await database.db.campaign_progress.find_one({"_id": campaign_id})
    checkpoint = dict(doc.get("checkpoint") or {}) if doc else {}
    handed = await database.db.campaign_handed.find_one({"_id": campaign_id})
    if handed is not None and handed["pass"] == checkpoint.get("pass", 0):
        checkpoint["handed"] = handed["handed"]
    return checkpoint


async def set_checkpoint(uow: MongoUnitOfWork, campaign_id: str, checkpoint: dict[str, Any]) -> None:
    fields = {k: v for k, v in checkpoint.items() if k != "handed"}  # campaign_handed keeps it
    await uow.db.campaign_progress.update_one({"_id": campaign_id}, {"$set": {"checkpoint": fields}},
                                              upsert=True, session=uow.session)


async def set_handed(database: MongoDatabase, campaign_id: str, pass_: int, handed: str) -> None:
    """Every queued message of pass ``pass_`` up to this contact id is on the broker."""
    await database.db.campaign_handed.update_one({"_id": campaign_id},
                                                 {"$set": {"pass": pass_, "handed": handed}}, upsert=True)


async def take_lease(database: MongoDatabase, campaign_id: str, owner: str, now: datetime,
                     seconds: float) -> bool:
    """Hold the campaign's sending lease (one sender at a time); False when another holds it."""
    try:
        await database.db.campaign_leases.find_one_and_update(
            {"_id": campaign_id, "$or": [{"owner": owner}, {"until": {"$lt": now}}, {"owner": None}]},
            {"$set": {"owner": owner, "until": now + timedelta(seconds=seconds)}}, upsert=True)
    except DuplicateKeyError:
        return False
    return True


async def release_lease(database: MongoDatabase, campaign_id: str, owner: str) -> None:
    await database.db.campaign_leases.update_one({"_id": campaign_id, "owner": owner},
                                                 {"$set": {"owner": None, "until": None}})

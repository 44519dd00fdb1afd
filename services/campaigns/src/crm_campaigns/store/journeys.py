"""Journeys and their runs in Mongo (the erasure helper relies on ``journey_runs`` shapes).

- ``journeys``: ``_id`` journey id, workspace_id, name, definition {trigger, start, steps,
  exit_on}, trigger_kind, active (bool), version, created_at, updated_at.
- ``journey_runs``: one per contact x run of a journey. ``_id`` run id, workspace_id,
  journey_id, contact_id, state active|done|exited, step (current step name or None),
  waiting_since (set while the run sits at a wait step), waiting_for (a wait_until's event),
  events (seen while waiting), next_at (when the runner looks again), seq (steps taken),
  last_send_id, exit_reason, lease_until (a runner's claim), started_at, updated_at.
  A unique partial index on (workspace_id, journey_id, contact_id) over active runs means a
  contact never runs the same journey twice at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from crmkit.mongo import MongoDatabase, MongoUnitOfWork

ACTIVE = "active"


async def prepare(database: MongoDatabase) -> None:
    db = database.db
    await db.journeys.create_index([("workspace_id", ASCENDING), ("created_at", DESCENDING)])
    await db.journeys.create_index([("active", ASCENDING), ("trigger_kind", ASCENDING)])
    await db.journey_runs.create_index(
        [("workspace_id", ASCENDING), ("journey_id", ASCENDING), ("contact_id", ASCENDING)],
        unique=True, name="one_active_run", partialFilterExpression={"state": ACTIVE})
    await db.journey_runs.create_index([("state", ASCENDING), ("next_at", ASCENDING)])
    await db.journey_runs.create_index([("workspace_id", ASCENDING), ("contact_id", ASCENDING)])


async def insert_journey(uow: MongoUnitOfWork, doc: dict[str, Any]) -> None:
    await uow.db.journeys.insert_one(doc, session=uow.session)


async def get_journey(database: MongoDatabase, workspace_id: str, journey_id: str) -> dict[str, Any] | None:
    return await database.db.journeys.find_one({"_id": journey_id, "workspace_id": workspace_id})


async def replace_journey(uow: MongoUnitOfWork, doc: dict[str, Any], expected_version: int) -> bool:
    found = await uow.db.journeys.replace_one(
        {"_id": doc["_id"], "workspace_id": doc["workspace_id"], "version": expected_version}, doc,
        session=uow.session)
    return found.matched_count == 1


async def delete_journey(uow: MongoUnitOfWork, workspace_id: str, journey_id: str) -> bool:
    gone = await uow.db.journeys.delete_one({"_id": journey_id, "workspace_id": workspace_id},
                                            session=uow.session)
    await uow.db.journey_runs.update_many(
        {"workspace_id": workspace_id, "journey_id": journey_id, "state": ACTIVE},
        {"$set": {"state": "exited", "exit_reason": "journey deleted", "next_at": None}}, session=uow.session)
    return gone.deleted_count == 1


async def list_journeys(database: MongoDatabase, workspace_id: str, limit: int,
                        after: str | None = None) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"workspace_id": workspace_id}
    if after:
        query["_id"] = {"$gt": after}
    cursor = database.db.journeys.find(query).sort("_id", ASCENDING).limit(limit)
    return [d async for d in cursor]


async def active_journeys(uow: MongoUnitOfWork, workspace_id: str, trigger_kind: str) -> list[dict[str, Any]]:
    cursor = uow.db.journeys.find(
        {"workspace_id": workspace_id, "active": True, "trigger_kind": trigger_kind}, session=uow.session)
    return [d async for d in cursor]


async def triggered_kinds(database: MongoDatabase, workspace_id: str, kinds: set[str]) -> set[str]:
    """Which of these trigger kinds an active journey of the workspace has."""
    cursor = database.db.journeys.find(
        {"workspace_id": workspace_id, "active": True, "trigger_kind": {"$in": sorted(kinds)}},
        {"trigger_kind": 1})
    return {d["trigger_kind"] async for d in cursor}


async def contacts_running(database: MongoDatabase, workspace_id: str, contact_ids: set[str]) -> set[str]:
    """Which of these contacts have an active run of any journey."""
    cursor = database.db.journey_runs.find(
        {"workspace_id": workspace_id, "contact_id": {"$in": sorted(contact_ids)}, "state": ACTIVE},
        {"contact_id": 1})
    return {d["contact_id"] async for d in cursor}


async def start_run(uow: MongoUnitOfWork, run: dict[str, Any]) -> bool:
    """Insert a run; False when the contact runs this journey already. (The read sees the
    committed runs; two triggers at once both pass it, and the unique partial index refuses
    the second insert — which aborts that transaction, so its consumer retries and reads.)"""
    if await has_active_run(uow, run["workspace_id"], run["journey_id"], run["contact_id"]):
        return False
    try:
        await uow.db.journey_runs.insert_one(run, session=uow.session)
    except DuplicateKeyError:
        return False
    return True


async def has_active_run(uow: MongoUnitOfWork, workspace_id: str, journey_id: str, contact_id: str) -> bool:
    found = await uow.db.journey_runs.find_one(
        {"workspace_id": workspace_id, "journey_id": journey_id, "contact_id": contact_id, "state": ACTIVE},
        {"_id": 1}, session=uow.session)
    return found is not None


async def active_runs_of(uow: MongoUnitOfWork, workspace_id: str, contact_id: str) -> list[dict[str, Any]]:
    cursor = uow.db.journey_runs.find(
        {"workspace_id": workspace_id, "contact_id": contact_id, "state": ACTIVE}, session=uow.session)
    return [d async for d in cursor]


async def note_event(uow: MongoUnitOfWork, run_id: str, event: str, now: datetime) -> None:
    """A wait_until's event came: remember it and let the runner look now."""
    await uow.db.journey_runs.update_one(
        {"_id": run_id, "state": ACTIVE},
        {"$addToSet": {"events": event}, "$set": {"next_at": now, "updated_at": now}}, session=uow.session)


async def exit_run(uow: MongoUnitOfWork, run_id: str, reason: str, now: datetime) -> None:
    await uow.db.journey_runs.update_one(
        {"_id": run_id, "state": ACTIVE},
        {"$set": {"state": "exited", "exit_reason": reason, "next_at": None, "updated_at": now}},
        session=uow.session)


async def claim_due(database: MongoDatabase, now: datetime, lease: timedelta) -> dict[str, Any] | None:
    """Lease one due active run to this runner (no other runner takes it until the lease ends)."""
    return await database.db.journey_runs.find_one_and_update(
        {"state": ACTIVE, "next_at": {"$lte": now},
         "$or": [{"lease_until": None}, {"lease_until": {"$lte": now}}]},
        {"$set": {"lease_until": now + lease}}, sort=[("next_at", ASCENDING)],
        return_document=ReturnDocument.AFTER)


async def save_run(uow: MongoUnitOfWork, run_id: str, lease_until: datetime, update: dict[str, Any]) -> bool:
    """Store the run's new position if this runner still holds its lease; releases it."""
    done = await uow.db.journey_runs.update_one(
        {"_id": run_id, "lease_until": lease_until}, {"$set": {**update, "lease_until": None}},
        session=uow.session)
    return done.matched_count == 1


async def list_runs(database: MongoDatabase, workspace_id: str, journey_id: str, limit: int,
                    after: str | None = None) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"workspace_id": workspace_id, "journey_id": journey_id}
    if after:
        query["_id"] = {"$gt": after}
    cursor = database.db.journey_runs.find(query).sort("_id", ASCENDING).limit(limit)
    return [d async for d in cursor]


async def journey_send_sent(uow: MongoUnitOfWork, send_id: str) -> bool:
    return await uow.db.sends.find_one({"_id": send_id}, {"_id": 1}, session=uow.session) is not None


async def engagement_of_send(uow: MongoUnitOfWork, send_id: str) -> frozenset[str]:
    """opened/clicked of one send, from its human-open/click counters (store/tracking.py's)."""
    doc = await uow.db.sends.find_one({"_id": send_id}, session=uow.session)
    if doc is None:
        return frozenset()
    seen = set()
    if doc.get("open_count") or doc.get("first_opened_at"):
        seen.add("opened")
    if doc.get("click_count") or doc.get("first_clicked_at"):
        seen.add("clicked")
    return frozenset(seen)

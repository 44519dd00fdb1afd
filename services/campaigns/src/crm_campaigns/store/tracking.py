"""Engagement with campaign messages: opens, clicks, unsubscribes and conversions.

A send document (``sends``, written by the send engine) gains the counters here:
``open_count``/``first_opened_at``/``last_opened_at`` (human opens), ``bot_open_count``,
``click_count``/``first_clicked_at``/``last_clicked_at``, ``bot_click_count`` and
``unsubscribed_at``. Every hit is also kept raw in ``engagements`` (kind, time, bot reason,
url; never the IP address or the user agent), which the time series and the last-touch
attribution read. ``conversions`` holds one document per attributed deal or order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from crmkit.ids import uuid7
from crmkit.mongo import MongoDatabase, MongoUnitOfWork

Document = dict[str, Any]


async def prepare_tracking(database: MongoDatabase) -> None:
    db = database.db
    await db.engagements.create_index([("workspace_id", ASCENDING), ("campaign_id", ASCENDING),
                                       ("at", ASCENDING)])
    # The last human click of a contact, for last-touch attribution.
    await db.engagements.create_index([("workspace_id", ASCENDING), ("contact_id", ASCENDING),
                                       ("kind", ASCENDING), ("at", DESCENDING)])
    await db.conversions.create_index([("workspace_id", ASCENDING), ("campaign_id", ASCENDING)])
    await db.conversions.create_index([("workspace_id", ASCENDING), ("contact_id", ASCENDING)])


async def find_send(uow: MongoUnitOfWork, workspace_id: str, send_id: str) -> Document | None:
    return await uow.db.sends.find_one({"_id": send_id, "workspace_id": workspace_id}, session=uow.session)


def _engagement(send: Document, kind: str, at: datetime, bot: str | None, url: str = "") -> Document:
    return {"_id": str(uuid7()), "workspace_id": send["workspace_id"], "send_id": send["_id"],
            "campaign_id": send.get("campaign_id", ""), "variant": send.get("variant", ""),
            "contact_id": send.get("contact_id", ""), "kind": kind, "at": at, "bot": bot, "url": url}


async def record_hit(uow: MongoUnitOfWork, send: Document, kind: str, at: datetime, bot: str | None,
                     url: str = "") -> bool:
    """Record an open (``kind="open"``) or a click; True when it is the send's first human one."""
    field = "open" if kind == "open" else "click"
    await uow.db.engagements.insert_one(_engagement(send, kind, at, bot, url), session=uow.session)
    if bot:
        update: Document = {"$inc": {f"bot_{field}_count": 1}}
    else:
        update = {"$inc": {f"{field}_count": 1},
                  "$min": {f"first_{field}ed_at": at}, "$max": {f"last_{field}ed_at": at}}
    await uow.db.sends.update_one({"_id": send["_id"], "workspace_id": send["workspace_id"]}, update,
                                  session=uow.session)
    return not bot and not send.get(f"{field}_count")


async def mark_unsubscribed(uow: MongoUnitOfWork, send: Document, at: datetime, method: str) -> bool:
    """True when this send was not unsubscribed before (a repeated POST changes nothing)."""
    result = await uow.db.sends.update_one(
        {"_id": send["_id"], "workspace_id": send["workspace_id"], "unsubscribed_at": {"$exists": False}},
        {"$set": {"unsubscribed_at": at, "unsubscribe_method": method}}, session=uow.session)
    if result.modified_count:
        await uow.db.engagements.insert_one(_engagement(send, "unsubscribe", at, None), session=uow.session)
    return bool(result.modified_count)


async def last_click(uow: MongoUnitOfWork, workspace_id: str, contact_id: str, before: datetime,
                     since: datetime) -> Document | None:
    """The contact's latest human click in ``[since, before]``: the last touch."""
    return await uow.db.engagements.find_one(
        {"workspace_id": workspace_id, "contact_id": contact_id, "kind": "click", "bot": None,
         "at": {"$gte": since, "$lte": before}},
        sort=[("at", DESCENDING)], session=uow.session)


async def add_conversion(uow: MongoUnitOfWork, conversion: Document) -> bool:
    """Insert once per ``_id`` (source and reference); False when it was attributed already."""
    if await uow.db.conversions.find_one({"_id": conversion["_id"]}, {"_id": 1}, session=uow.session):
        return False
    try:
        await uow.db.conversions.insert_one(conversion, session=uow.session)
    except DuplicateKeyError:
        return False
    return True

"""Report aggregations over ``sends``, ``engagements`` and ``conversions`` (workspace-scoped)."""

from __future__ import annotations

from typing import Any

from crm_campaigns.domain.reports import SENT_STATUSES
from crmkit.mongo import MongoDatabase

Document = dict[str, Any]


def _count_if(condition: Document) -> Document:
    return {"$sum": {"$cond": [condition, 1, 0]}}


def _positive(name: str) -> Document:
    return {"$gt": [{"$ifNull": [f"${name}", 0]}, 0]}


async def send_figures(database: MongoDatabase, workspace_id: str, campaign_id: str) -> list[Document]:
    """One row per variant: status counts and the engagement counters of its sends."""
    pipeline: list[Document] = [
        {"$match": {"workspace_id": workspace_id, "campaign_id": campaign_id}},
        {"$group": {
            "_id": {"$ifNull": ["$variant", ""]},
            "sent": _count_if({"$in": ["$status", list(SENT_STATUSES)]}),
            "delivered": _count_if({"$eq": ["$status", "delivered"]}),
            "bounced": _count_if({"$eq": ["$status", "bounced"]}),
            "failed": _count_if({"$eq": ["$status", "failed"]}),
            "suppressed": _count_if({"$eq": ["$status", "suppressed"]}),
            "opened_unique": _count_if(_positive("open_count")),
            "opened_total": {"$sum": {"$ifNull": ["$open_count", 0]}},
            "bot_opens": {"$sum": {"$ifNull": ["$bot_open_count", 0]}},
            "clicked_unique": _count_if(_positive("click_count")),
            "clicked_total": {"$sum": {"$ifNull": ["$click_count", 0]}},
            "unsubscribed": _count_if({"$gt": ["$unsubscribed_at", None]}),
        }},
    ]
    cursor = await database.db.sends.aggregate(pipeline)
    return [{**row, "variant": row["_id"]} async for row in cursor]


async def conversion_figures(database: MongoDatabase, workspace_id: str, campaign_id: str) -> list[Document]:
    """One row per variant and currency: conversions and their amount."""
    pipeline: list[Document] = [
        {"$match": {"workspace_id": workspace_id, "campaign_id": campaign_id}},
        {"$group": {"_id": {"variant": "$variant", "currency": "$currency"},
                    "count": {"$sum": 1}, "amount_minor": {"$sum": "$amount_minor"}}},
    ]
    cursor = await database.db.conversions.aggregate(pipeline)
    return [{"variant": row["_id"]["variant"], "currency": row["_id"]["currency"], "count": row["count"],
             "amount_minor": row["amount_minor"]} async for row in cursor]


async def human_hits(database: MongoDatabase, workspace_id: str, campaign_id: str) -> list[Document]:
    """The campaign's human opens, clicks and unsubscribes: ``{variant, kind, at}``."""
    cursor = database.db.engagements.find(
        {"workspace_id": workspace_id, "campaign_id": campaign_id, "bot": None},
        {"_id": 0, "variant": 1, "kind": 1, "at": 1})
    return [row async for row in cursor]


async def campaign_exists(database: MongoDatabase, workspace_id: str, campaign_id: str) -> bool:
    return await database.db.campaigns.find_one({"_id": campaign_id, "workspace_id": workspace_id},
                                                {"_id": 1}) is not None

"""Pipeline's domain values. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True)
class InteractionSeen:
    contact_id: UUID
    occurred_at: datetime


@dataclass(frozen=True)
class ContactMerge:
    """Contacts merged ``loser_id`` into ``survivor_id``: its activity is the survivor's now."""

    loser_id: UUID
    survivor_id: UUID


@dataclass(frozen=True)
class ActivityDelta:
    """What a batch of interactions adds to one contact's activity."""

    workspace_id: str
    contact_id: UUID
    count: int
    last_at: datetime


def sum_activity(seen: list[tuple[str, InteractionSeen]]) -> list[ActivityDelta]:
    """One delta per (workspace, contact): how many interactions, and the latest."""
    totals: dict[tuple[str, UUID], ActivityDelta] = {}
    for workspace_id, item in seen:
        key = (workspace_id, item.contact_id)
        known = totals.get(key)
        totals[key] = ActivityDelta(
            workspace_id, item.contact_id, (known.count if known else 0) + 1,
            max(known.last_at, item.occurred_at) if known else item.occurred_at)
    return list(totals.values())


@dataclass(frozen=True)
class ContactActivity:
    contact_id: UUID
    interaction_count: int
    last_activity_at: datetime

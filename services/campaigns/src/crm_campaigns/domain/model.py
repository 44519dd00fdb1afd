"""Campaigns' domain values. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class InteractionSeen:
    contact_id: str
    occurred_at: datetime


@dataclass(frozen=True)
class ContactMerge:
    """Contacts merged ``loser_id`` into ``survivor_id``: its engagement is the survivor's now."""

    loser_id: str
    survivor_id: str


@dataclass(frozen=True)
class EngagementDelta:
    """What a batch of interactions adds to one contact's engagement."""

    workspace_id: str
    contact_id: str
    count: int
    last_at: datetime


def sum_engagement(seen: list[tuple[str, InteractionSeen]]) -> list[EngagementDelta]:
    """One delta per (workspace, contact): how many interactions, and the latest."""
    totals: dict[tuple[str, str], EngagementDelta] = {}
    for workspace_id, item in seen:
        key = (workspace_id, item.contact_id)
        known = totals.get(key)
        totals[key] = EngagementDelta(
            workspace_id, item.contact_id, (known.count if known else 0) + 1,
            max(known.last_at, item.occurred_at) if known else item.occurred_at)
    return list(totals.values())


@dataclass(frozen=True)
class ContactEngagement:
    contact_id: str
    interaction_count: int
    last_interaction_at: datetime

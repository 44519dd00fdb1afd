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


# --- templates, campaigns, sends (others build on these; keep them stable) ---

CAMPAIGN_STATUSES = ("draft", "scheduled", "sending", "paused", "cancelled", "sent")
SEND_STATUSES = ("queued", "sent", "delivered", "bounced", "failed", "suppressed")
SUPPRESSION_REASONS = ("unsubscribed", "bounced", "complained", "erased")


@dataclass(frozen=True)
class Template:
    id: str
    workspace_id: str
    name: str
    subject: str
    html: str
    text: str
    # Custom field keys the template may use as ``contact.custom.<key>``.
    fields: tuple[str, ...]
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class QuietHours:
    """No sending between ``start`` and ``end`` (local "HH:MM", may wrap midnight) in the
    recipient's time zone, or ``time_zone`` when the contact has none."""

    start: str
    end: str
    time_zone: str


@dataclass(frozen=True)
class Audience:
    segments: tuple[str, ...]
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Campaign:
    id: str
    workspace_id: str
    name: str
    template_id: str
    audience: Audience
    status: str
    schedule_at: datetime | None
    throttle_per_minute: int | None
    quiet_hours: QuietHours | None
    version: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class Send:
    """One message of a campaign to one contact: at most one per (workspace, campaign, contact)."""

    id: str
    workspace_id: str
    campaign_id: str
    contact_id: str
    address: str
    status: str
    variant: str = ""
    reason: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

"""Campaigns' domain values. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

INTERACTION_RECORDED = "crm.interactions.interaction.recorded.v1"


@dataclass(frozen=True)
class ContactEngagement:
    contact_id: str
    interaction_count: int
    last_interaction_at: datetime

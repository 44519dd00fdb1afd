"""Pipeline's domain values. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

INTERACTION_RECORDED = "crm.interactions.interaction.recorded.v1"


@dataclass(frozen=True)
class ContactActivity:
    contact_id: UUID
    interaction_count: int
    last_activity_at: datetime

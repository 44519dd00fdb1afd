"""Segment event types, and the membership change a recompute or a contact write produces."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

SEGMENT_CREATED = "crm.contacts.segment.created.v1"
SEGMENT_UPDATED = "crm.contacts.segment.updated.v1"
SEGMENT_DELETED = "crm.contacts.segment.deleted.v1"
SEGMENT_MEMBERSHIP_CHANGED = "crm.contacts.segment.membership_changed.v1"


@dataclass(frozen=True)
class MembershipChange:
    """``contact_id`` joined (``member``) or left the segment."""

    segment_id: UUID
    contact_id: UUID
    member: bool

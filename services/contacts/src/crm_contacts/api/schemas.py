from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel

from crm_contacts.domain.model import Contact, TimelineEntry


class IdentityOut(BaseModel):
    kind: str
    value: str


class ContactOut(BaseModel):
    id: UUID
    display_name: str
    identities: list[IdentityOut]
    created_at: datetime
    last_seen_at: datetime | None

    @classmethod
    def of(cls, contact: Contact) -> ContactOut:
        return cls(
            id=contact.id,
            display_name=contact.display_name,
            identities=[IdentityOut(kind=i.kind.value, value=i.value) for i in contact.identities],
            created_at=contact.created_at,
            last_seen_at=contact.last_seen_at,
        )


class TimelineEntryOut(BaseModel):
    id: str
    kind: str
    channel: str
    direction: str
    summary: str
    occurred_at: datetime

    @classmethod
    def of(cls, entry: TimelineEntry) -> TimelineEntryOut:
        return cls(id=entry.entry_id, kind=entry.kind, channel=entry.channel,
                   direction=entry.direction, summary=entry.summary, occurred_at=entry.occurred_at)


class TimelinePageOut(BaseModel):
    items: list[TimelineEntryOut]
    next_cursor: str | None

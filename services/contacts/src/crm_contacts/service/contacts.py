"""Contacts' use cases: the one layer that the HTTP API, gRPC and the consumers call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from crm_contacts.domain.model import (
    Contact,
    ContactTimelineEntry,
    Identity,
    Resolution,
    TimelineEntry,
    TimelinePosition,
)
from crm_contacts.store.contacts import ContactsStore
from crm_contacts.wire import contact_created
from crmkit.ids import uuid7
from crmkit.kafka import Delivered
from crmkit.postgres import PgDatabase

TIMELINE_CONSUMER = "contacts.timeline"
MAX_PAGE = 100


@dataclass(frozen=True)
class IdentityRequest:
    identity: Identity
    display_name: str
    create_if_missing: bool


@dataclass(frozen=True)
class TimelinePage:
    entries: list[TimelineEntry]
    next_cursor: str | None


class ContactsService:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def resolve_identities(
        self, workspace_id: str, requests: Sequence[IdentityRequest]
    ) -> list[Resolution]:
        """Resolve each identity to its contact, creating contacts for unknown identities when
        asked. Identities are claimed in one fixed order, so concurrent batches cannot deadlock."""
        resolved: dict[Identity, Resolution] = {}
        async with self.db.unit_of_work() as uow:
            store = ContactsStore(uow.conn)
            for req in sorted(requests, key=lambda r: (r.identity.kind.value, r.identity.value)):
                known = resolved.get(req.identity)
                if known is not None and (known.contact_id is not None or not req.create_if_missing):
                    continue
                existing = await store.contact_of(workspace_id, req.identity)
                if existing is not None or not req.create_if_missing:
                    resolved[req.identity] = Resolution(req.identity, existing, False)
                    continue
                contact_id = uuid7()
                if await store.claim_identity(workspace_id, req.identity, contact_id):
                    await store.insert_contact(workspace_id, contact_id, req.display_name)
                    resolved[req.identity] = Resolution(req.identity, contact_id, True)
                    uow.add(contact_created(workspace_id, contact_id, req.display_name, req.identity))
                else:  # another resolver claimed it first, and has committed
                    winner = await store.contact_of(workspace_id, req.identity)
                    resolved[req.identity] = Resolution(req.identity, winner, False)
        return [resolved[r.identity] for r in requests]

    async def get_contact(self, workspace_id: str, contact_id: UUID) -> Contact | None:
        async with self.db.pool.acquire() as conn:
            return await ContactsStore(conn).get(workspace_id, contact_id)

    async def timeline(
        self, workspace_id: str, contact_id: UUID, cursor: str | None, limit: int
    ) -> TimelinePage | None:
        """A contact's timeline, newest first; None when the contact is not in the workspace."""
        after = TimelinePosition.decode(cursor) if cursor else None
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            store = ContactsStore(conn)
            if not await store.exists(workspace_id, contact_id):
                return None
            entries = await store.timeline(workspace_id, contact_id, after, limit + 1)
        page = entries[:limit]
        next_cursor = (
            TimelinePosition(page[-1].occurred_at, page[-1].entry_id).encode()
            if len(entries) > limit else None
        )
        return TimelinePage(page, next_cursor)

    async def record_timeline_entries(self, items: Sequence[Delivered[ContactTimelineEntry]]) -> int:
        """Put entries on contacts' timelines and move their last-seen times, once per event,
        in one transaction; returns how many were new."""
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(TIMELINE_CONSUMER, [d.event_id for d in items])
            applied = [d for d in items if d.event_id in fresh]
            store = ContactsStore(uow.conn)
            await store.add_timeline_entries([(d.workspace_id, d.item) for d in applied])
            last_seen: dict[tuple[str, UUID], datetime] = {}
            for d in applied:
                key = (d.workspace_id, d.item.contact_id)
                last_seen[key] = max(last_seen.get(key, d.item.entry.occurred_at), d.item.entry.occurred_at)
            await store.touch_last_seen(last_seen)
        return len(applied)

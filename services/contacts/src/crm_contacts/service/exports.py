"""Contacts export: the live contacts a filter or a segment selects, page by page, oldest first.

Pages are read by keyset (created_at, id), each on a connection held only while it is read,
so a slow download never holds the pool. Merged-away and erased contacts are never exported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from crm_contacts.domain.errors import NotFound
from crm_contacts.domain.fields import Entity
from crm_contacts.domain.model import Contact
from crm_contacts.store import fields as field_store
from crm_contacts.store import imports as store
from crm_contacts.store.contacts import ContactsStore
from crmkit.fields import FieldDefinition, defined_only
from crmkit.postgres import PgDatabase

EXPORT_PAGE = 1000


@dataclass(frozen=True)
class ExportFilter:
    lifecycle_stage: str | None = None
    owner_id: str | None = None
    tag: str | None = None
    segment_id: UUID | None = None


@dataclass(frozen=True)
class Export:
    """The workspace's custom fields (the CSV's columns), and the contacts, page by page."""

    fields: list[FieldDefinition]
    pages: AsyncIterator[list[Contact]]


class ExportsService:
    def __init__(self, db: PgDatabase, page_size: int = EXPORT_PAGE) -> None:
        self.db = db
        self.page_size = page_size

    async def export(self, workspace_id: str, where: ExportFilter) -> Export:
        """NotFound for a segment that is not the workspace's (before anything is streamed)."""
        async with self.db.pool.acquire() as conn:
            if where.segment_id and not await store.segment_exists(conn, workspace_id, where.segment_id):
                raise NotFound("segment")
            definitions = await field_store.definitions(conn, workspace_id, Entity.CONTACT)
        return Export(list(definitions.values()), self._pages(workspace_id, where, definitions))

    async def _pages(self, workspace_id: str, where: ExportFilter,
                     definitions: dict[str, FieldDefinition]) -> AsyncIterator[list[Contact]]:
        after: tuple[datetime, UUID] | None = None
        while True:
            async with self.db.pool.acquire() as conn:
                keys = await store.export_page(
                    conn, workspace_id, lifecycle_stage=where.lifecycle_stage, owner_id=where.owner_id,
                    tag=where.tag, segment_id=where.segment_id, after=after, limit=self.page_size)
                contacts = await ContactsStore(conn).get_many(workspace_id, [k for k, _ in keys])
            found = {c.id: c for c in contacts}
            page = [found[k] for k, _ in keys if k in found and not found[k].erased]
            if page:
                yield [replace(c, custom=defined_only(definitions, c.custom)) for c in page]
            if len(keys) < self.page_size:
                return
            after = (keys[-1][1], keys[-1][0])

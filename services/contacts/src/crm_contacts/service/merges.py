"""Merging two contacts into one: the survivor keeps every identity, tag, company link,
custom field, consent and timeline entry of both, and the loser's id becomes a redirect.

Un-merge is out of scope: the loser's record is kept in the merge history (and the audit log),
so a wrong merge can be undone by hand, not by an API.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from uuid import UUID

import asyncpg

from crm_contacts.domain.errors import Conflict, FieldError, InvalidFields, NotFound, VersionMismatch
from crm_contacts.domain.fields import Entity
from crm_contacts.domain.model import Contact
from crm_contacts.domain.rules import merge_choices, merged_values
from crm_contacts.service.segments import reevaluate_membership
from crm_contacts.store import audit, merges, privacy
from crm_contacts.store import fields as field_store
from crm_contacts.store.contacts import ContactsStore
from crm_contacts.store.merges import MergeRecord
from crm_contacts.wire import contact_merged, contact_updated
from crmkit.fields import defined_only
from crmkit.postgres import PgDatabase


class MergesService:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def merge(self, workspace_id: str, actor: str, survivor_id: UUID, loser_id: UUID,
                    choices: dict[str, str], expected_version: int | None) -> Contact:
        """Merge ``loser_id`` into ``survivor_id``; ``choices`` picks a side per field."""
        if survivor_id == loser_id:
            raise InvalidFields([FieldError("loser_id", "a contact cannot be merged into itself")])
        choices, errors = merge_choices(choices)
        if errors:
            raise InvalidFields(errors)
        async with self.db.unit_of_work() as uow:
            store = ContactsStore(uow.conn)
            locked: dict[UUID, Contact | None] = {}
            for contact_id in sorted((survivor_id, loser_id)):  # one lock order: no deadlocks
                locked[contact_id] = await store.get(workspace_id, contact_id, for_update=True)
            survivor, loser = locked[survivor_id], locked[loser_id]
            if survivor is None or loser is None:
                raise NotFound("contact")
            if survivor.erased or loser.erased:
                raise Conflict("an erased contact cannot be merged")
            if expected_version is not None and expected_version != survivor.version:
                raise VersionMismatch(survivor.version)
            definitions = await field_store.definitions(uow.conn, workspace_id, Entity.CONTACT)
            values: dict[str, Any] = merged_values(survivor, loser, choices)
            values["custom"] = defined_only(definitions, values["custom"])
            await merges.absorb(uow.conn, workspace_id, survivor_id, loser_id)
            await self._move_consents(uow.conn, workspace_id, survivor_id, loser_id)
            await store.update_contact(workspace_id, survivor_id, values)
            await store.refresh_search([survivor_id])
            after = await store.get(workspace_id, survivor_id)
            assert after is not None
            await merges.record(uow.conn, workspace_id, survivor_id, loser_id, actor, choices,
                                loser.snapshot())
            await audit.record(uow.conn, workspace_id, "contact", survivor_id, "merge", actor,
                               survivor.snapshot(), after.snapshot())
            await audit.record(uow.conn, workspace_id, "contact", loser_id, "merged", actor,
                               loser.snapshot(), {"merged_into": str(survivor_id)})
            uow.add(contact_merged(workspace_id, survivor_id, loser_id))
            uow.add(contact_updated(after, ["merge"]))
            await reevaluate_membership(uow, workspace_id, [survivor_id, loser_id])
        return replace(after, custom=defined_only(definitions, after.custom))

    async def _move_consents(self, conn: asyncpg.Connection, workspace_id: str, survivor_id: UUID,
                             loser_id: UUID) -> None:
        """The newest statement per channel and purpose wins, whichever contact made it."""
        held = await privacy.consents(conn, [loser_id])
        for record in held[loser_id]:
            await privacy.set_consent(conn, workspace_id, survivor_id, record)
        await privacy.drop_consents(conn, [loser_id])

    async def history(self, workspace_id: str, contact_id: UUID) -> list[MergeRecord]:
        """The merges this contact took part in. A contact merged away keeps its history; an
        id that is neither a contact nor in a merge of this workspace is not found (as for
        every other contact read), so another workspace's ids answer as unknown ones do."""
        async with self.db.pool.acquire() as conn:
            found = await merges.history(conn, workspace_id, contact_id)
            if not found and not await ContactsStore(conn).exists(workspace_id, contact_id):
                raise NotFound("contact")
            return found

"""Macros: canned replies with placeholders and field actions, written, listed and applied."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

import grpc

from crm.common.v1 import common_pb2
from crm_ticketing.domain.errors import FieldError, InvalidFields, NotFound, VersionMismatch
from crm_ticketing.domain.model import Ticket
from crm_ticketing.domain.replies import (
    Draft,
    macro_changes,
    parse_macro,
    render,
    ticket_token,
)
from crm_ticketing.service.conversation import Conversation, Written
from crm_ticketing.store.macros import Macro, MacrosStore
from crm_ticketing.store.tickets import TicketsStore
from crmkit.contacts import ContactsClient
from crmkit.ids import uuid7
from crmkit.pagination import InvalidCursor, decode_cursor, encode_cursor
from crmkit.postgres import PgDatabase

log = logging.getLogger(__name__)
MAX_MACROS_PAGE = 100
_CURSOR = "macros"


@dataclass(frozen=True)
class MacroPage:
    items: list[Macro]
    next_cursor: str | None


class Macros:
    def __init__(self, db: PgDatabase, conversation: Conversation, contacts: ContactsClient | None) -> None:
        self.db = db
        self.conversation = conversation
        self.contacts = contacts

    async def create(self, workspace_id: str, actor: str, raw: dict[str, Any]) -> Macro:
        values = parse_macro(raw)
        async with self.db.unit_of_work() as uow:
            return await MacrosStore(uow.conn).insert(workspace_id, uuid7(), values, actor)

    async def get(self, workspace_id: str, macro_id: UUID) -> Macro:
        async with self.db.pool.acquire() as conn:
            macro = await MacrosStore(conn).get(workspace_id, macro_id)
        if macro is None:
            raise NotFound("macro")
        return macro

    async def update(self, workspace_id: str, macro_id: UUID, raw: dict[str, Any], expected_version: int
                     ) -> Macro:
        values = parse_macro(raw, partial=True)
        async with self.db.unit_of_work() as uow:
            store = MacrosStore(uow.conn)
            macro = await store.get(workspace_id, macro_id, for_update=True)
            if macro is None:
                raise NotFound("macro")
            if macro.version != expected_version:
                raise VersionMismatch(macro.version)
            changed = replace(macro, **values)
            if changed == macro:
                return macro
            if not changed.body.strip() and not changed.actions:
                raise InvalidFields([FieldError("body", "a macro needs a body or some actions")])
            return await store.update(workspace_id, changed)

    async def delete(self, workspace_id: str, macro_id: UUID, expected_version: int) -> None:
        async with self.db.unit_of_work() as uow:
            store = MacrosStore(uow.conn)
            macro = await store.get(workspace_id, macro_id, for_update=True)
            if macro is None:
                raise NotFound("macro")
            if macro.version != expected_version:
                raise VersionMismatch(macro.version)
            await store.delete(workspace_id, macro_id)

    async def list(self, workspace_id: str, cursor: str | None, limit: int) -> MacroPage:
        after: tuple[str, UUID] | None = None
        if cursor:
            values = decode_cursor(_CURSOR, cursor, 2)
            try:
                after = (str(values[0]), UUID(str(values[1])))
            except ValueError as exc:
                raise InvalidCursor() from exc
        limit = max(1, min(limit, MAX_MACROS_PAGE))
        async with self.db.pool.acquire() as conn:
            found = await MacrosStore(conn).list(workspace_id, after, limit + 1)
        page = found[:limit]
        more = len(found) > limit
        return MacroPage(page, encode_cursor(_CURSOR, [page[-1].name, page[-1].id]) if more else None)

    async def apply(self, workspace_id: str, actor: str, ticket_id: UUID, macro_id: UUID,
                    after: str | None = None, force: bool = False) -> Written:
        """Render the macro for the ticket and its requester, then in ONE transaction send the
        reply (or write the note) and apply the actions through the ticket's rules, with
        history and events; all or nothing. The requester is read from contacts before the
        transaction (no remote call holds a lock); when contacts cannot say, its
        placeholders render empty (or their defaults)."""
        async with self.db.pool.acquire() as conn:
            macro = await MacrosStore(conn).get(workspace_id, macro_id)
            ticket = await TicketsStore(conn).get(workspace_id, ticket_id)
        if macro is None:
            raise NotFound("macro")
        if ticket is None:
            raise NotFound("ticket")
        body = render(macro.body, await self._values(ticket, actor))
        draft = Draft(body=body, internal=macro.internal, attachments=[], after=after, force=force)
        async with self.db.unit_of_work() as uow:
            current = await TicketsStore(uow.conn).get(workspace_id, ticket_id, for_update=True)
            changes = macro_changes(macro.actions, current.tags if current else ())
            return await self.conversation.write(uow, workspace_id, actor, ticket_id, draft, changes,
                                                 macro.id)

    async def _values(self, ticket: Ticket, actor: str) -> dict[str, str]:
        values = {
            "ticket.id": str(ticket.id), "ticket.subject": ticket.subject,
            "ticket.status": ticket.status.value, "ticket.priority": ticket.priority.value,
            "ticket.token": ticket_token(ticket.id), "agent.name": actor,
        }
        if ticket.requester_kind == "email":
            values["contact.email"] = ticket.requester
        contact = None
        if self.contacts is not None:
            try:
                contact = await self.contacts.get_contact(ticket.workspace_id, str(ticket.contact_id))
            except grpc.aio.AioRpcError as exc:
                log.warning("contacts could not be read for a macro: %s", exc.code().name)
        if contact is not None:
            values |= {"contact.first_name": contact.first_name, "contact.last_name": contact.last_name,
                       "contact.name": contact.display_name}
            emails = [i.value for i in contact.identities if i.kind == common_pb2.IDENTITY_KIND_EMAIL]
            if emails and "contact.email" not in values:
                values["contact.email"] = emails[0]
        return values

"""Agents writing in a ticket: public replies (sent through ingest), internal notes, the
messages of a ticket, and ingest's news about the replies it sent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from crm_ticketing.domain.errors import FieldError, InvalidFields, NotFound, TicketingError
from crm_ticketing.domain.model import Ticket
from crm_ticketing.domain.replies import (
    Collision,
    DeliveryReport,
    Draft,
    SentReply,
    collisions,
    email_threading,
    next_delivery_status,
    parse_draft,
    reply_subject,
    status_after_message,
    ticket_token,
    token_key,
)
from crm_ticketing.domain.transitions import parse_changes
from crm_ticketing.service.hooks import MessageKind, TicketChange
from crm_ticketing.service.tickets import TicketingService
from crm_ticketing.store.messages import MessagesStore, TicketMessage
from crm_ticketing.store.tickets import TicketsStore
from crm_ticketing.wire import message_added, outbound_to_requester
from crmkit.ids import uuid7
from crmkit.kafka import Delivered
from crmkit.pagination import InvalidCursor, decode_cursor, encode_cursor
from crmkit.postgres import PgDatabase, PgUnitOfWork

REPLIES_CONSUMER = "ticketing.replies"
DELIVERIES_CONSUMER = "ticketing.deliveries"
MAX_MESSAGES_PAGE = 100
_CURSOR = "ticket-messages"


class NoRecipient(TicketingError):
    """The ticket does not know where its requester wrote from (opened before ticketing kept
    it): a public reply cannot be sent; a note can be written."""

    def __init__(self) -> None:
        super().__init__("the ticket has no requester address to send a reply to")


@dataclass(frozen=True)
class Written:
    """What an agent's write did: the message (None when a macro only changed fields) and
    the ticket after it."""

    message: TicketMessage | None
    ticket: Ticket


@dataclass(frozen=True)
class MessagePage:
    items: list[TicketMessage]
    next_cursor: str | None


class Conversation:
    def __init__(self, db: PgDatabase, tickets: TicketingService) -> None:
        self.db = db
        self.tickets = tickets

    async def add_message(self, workspace_id: str, actor: str, ticket_id: UUID, raw: dict[str, Any]
                          ) -> Written:
        """A reply or note from the API (checked first: InvalidFields names every bad field)."""
        draft = parse_draft(raw)
        async with self.db.unit_of_work() as uow:
            return await self.write(uow, workspace_id, actor, ticket_id, draft)

    async def write(self, uow: PgUnitOfWork, workspace_id: str, actor: str, ticket_id: UUID, draft: Draft,
                    changes: dict[str, Any] | None = None, macro_id: UUID | None = None) -> Written:
        """In ``uow``'s transaction, with the ticket locked (so concurrent writers go one after
        the other): refuse with Collision when someone else wrote since ``draft.after``; store
        the message (none when its body is empty); queue a public reply for ingest on
        ``crm.outbound.v1``; apply ``changes`` (a PATCH body) and the status the message
        implies through the ticket's rules, with history and events; run the hooks once."""
        store, messages = TicketsStore(uow.conn), MessagesStore(uow.conn)
        before = await store.get(workspace_id, ticket_id, for_update=True)
        if before is None:
            raise NotFound("ticket")
        await self._check_collision(messages, before, actor, draft)
        has_message = bool(draft.body.strip())
        raw = dict(changes or {})
        requested = draft.status if draft.status is not None else raw.get("status")
        status = status_after_message(before.status.value, requested, draft.internal or not has_message)
        if status is not None:
            raw["status"] = status
        values = parse_changes(raw)
        message: TicketMessage | None = None
        kind: str | None = None
        if has_message:
            kind = MessageKind.NOTE if draft.internal else MessageKind.REPLY
            message = await self._add(uow, before, actor, draft, kind, macro_id)
        after, fields = await self.tickets.change_fields(uow, before, values, actor)
        if message is not None or fields:
            await self.tickets.after_change(uow, before, after, TicketChange(actor=actor, fields=fields,
                                                                             message=kind))
        return Written(message, await store.get(workspace_id, ticket_id) or after)

    @staticmethod
    async def _check_collision(messages: MessagesStore, ticket: Ticket, actor: str, draft: Draft) -> None:
        if draft.after is None:
            return
        seen = await messages.seq_of(ticket.workspace_id, ticket.id, draft.after)
        if seen is None:
            raise InvalidFields([FieldError("after", "not a message of this ticket")])
        newer = collisions(await messages.added_after(ticket.workspace_id, ticket.id, seen), actor)
        if newer and not draft.force:
            raise Collision(newer)

    @staticmethod
    async def _add(uow: PgUnitOfWork, ticket: Ticket, actor: str, draft: Draft, kind: str,
                   macro_id: UUID | None) -> TicketMessage:
        messages = MessagesStore(uow.conn)
        if kind == MessageKind.REPLY and not ticket.requester:
            raise NoRecipient()
        message_id, now = str(uuid7()), datetime.now(UTC)
        message = await messages.add(ticket.workspace_id, ticket.id, message_id, kind, actor, draft.body, now,
                                     draft.attachments, macro_id)
        if kind == MessageKind.REPLY:
            token = token_key(ticket_token(ticket.id))  # tickets opened before tokens existed too
            await TicketsStore(uow.conn).add_keys(ticket.workspace_id, ticket.id, [token])
            if ticket.channel == "email":
                chain, ours = await messages.email_chain(ticket.workspace_id, ticket.id)
                threading = email_threading(chain, ours)
                uow.add(outbound_to_requester(
                    ticket, message_id, draft.body, subject=reply_subject(ticket.subject, ticket.id),
                    in_reply_to=threading.in_reply_to, references=threading.references))
            else:
                conversation = await messages.conversation_id(ticket.workspace_id, ticket.id, ticket.channel)
                uow.add(outbound_to_requester(ticket, message_id, draft.body, conversation_id=conversation))
        uow.add(message_added(ticket, message_id, kind, actor, now, macro_id))
        return message

    async def messages(self, workspace_id: str, ticket_id: UUID, cursor: str | None, limit: int
                       ) -> MessagePage:
        """Oldest first. NotFound outside the workspace; InvalidCursor for a forged cursor."""
        after = 0
        if cursor:
            [raw] = decode_cursor(_CURSOR, cursor, 1)
            if not isinstance(raw, int) or isinstance(raw, bool):
                raise InvalidCursor()
            after = raw
        limit = max(1, min(limit, MAX_MESSAGES_PAGE))
        async with self.db.pool.acquire() as conn:
            if await TicketsStore(conn).get(workspace_id, ticket_id) is None:
                raise NotFound("ticket")
            found = await MessagesStore(conn).page(workspace_id, ticket_id, after, limit + 1)
        page = found[:limit]
        more = len(found) > limit
        return MessagePage(page, encode_cursor(_CURSOR, [page[-1].seq]) if more else None)

    # -- ingest's news about our replies (crm.interactions.v1) -------------------------------------

    async def record_sent(self, items: Sequence[Delivered[SentReply]]) -> None:
        """Ingest sent one of our replies as ``message_id``: keep it on the reply and as a thread
        key of its ticket, so the customer's answer (In-Reply-To: it) continues the ticket.
        Outbound messages of others (campaigns) match no reply and are skipped. Once per event."""
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(REPLIES_CONSUMER, [d.event_id for d in items])
            messages, tickets = MessagesStore(uow.conn), TicketsStore(uow.conn)
            for sent in (d.item for d in items if d.event_id in fresh):
                found = await messages.reply(sent.workspace_id, sent.outbound_id)
                if found is None or not sent.message_id:
                    continue
                await messages.set_sent_message_id(sent.workspace_id, sent.outbound_id, sent.message_id)
                await tickets.add_keys(sent.workspace_id, found[0], [f"msgid:{sent.message_id}"])

    async def record_delivery(self, items: Sequence[Delivered[DeliveryReport]]) -> None:
        """A reply's delivery status (sent, delivered, read, failed, bounced), never moving back
        (``next_delivery_status``). Once per event."""
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(DELIVERIES_CONSUMER, [d.event_id for d in items])
            messages = MessagesStore(uow.conn)
            for report in (d.item for d in items if d.event_id in fresh):
                found = await messages.reply(report.workspace_id, report.outbound_id)
                if found is None:
                    continue
                status = next_delivery_status(found[1], report.status)
                if status is not None:
                    await messages.set_delivery(report.workspace_id, report.outbound_id, status, report.error,
                                                report.at)

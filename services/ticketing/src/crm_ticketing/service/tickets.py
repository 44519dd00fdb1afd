"""Ticketing's use cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from crm_ticketing.domain.errors import NotFound, VersionMismatch
from crm_ticketing.domain.follow_ups import LinkKind, opens_follow_up
from crm_ticketing.domain.model import (
    ContactMerge,
    InboundMessage,
    Ticket,
    TicketStatus,
    decode_cursor,
    encode_cursor,
    own_keys,
    parent_keys,
)
from crm_ticketing.domain.replies import ticket_token, token_key
from crm_ticketing.domain.transitions import (
    apply_changes,
    parse_changes,
    reopened_by_reply,
)
from crm_ticketing.service.hooks import MessageKind, TicketChange, TicketHook
from crm_ticketing.store import custom_fields
from crm_ticketing.store.csat import CsatStore
from crm_ticketing.store.links import LinksStore
from crm_ticketing.store.tickets import HistoryEntry, TicketsStore
from crm_ticketing.wire import ticket_changed, ticket_created
from crmkit.fields import defined_only
from crmkit.ids import uuid7
from crmkit.kafka import Delivered, TransientError
from crmkit.pagination import InvalidCursor as PageCursorError
from crmkit.pagination import decode_cursor as decode_page_cursor
from crmkit.pagination import encode_cursor as encode_page_cursor
from crmkit.personal_data import MAX_ITEMS
from crmkit.postgres import PgDatabase, PgUnitOfWork
from crmkit.redirects import ContactRedirects

THREADING_CONSUMER = "ticketing.threading"
MERGES_CONSUMER = "ticketing.merges"
MAX_PAGE = 100
SYSTEM = "system"
_HISTORY_CURSOR = "ticket-history"


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True)
class TicketPage:
    items: list[Ticket]
    next_cursor: str | None


@dataclass(frozen=True)
class HistoryPage:
    items: list[HistoryEntry]
    next_cursor: str | None


class _ReopenWindows:
    """Each workspace's reopen window, read once per batch."""

    def __init__(self, links: LinksStore) -> None:
        self.links = links
        self.known: dict[str, timedelta] = {}

    async def get(self, workspace_id: str) -> timedelta:
        if workspace_id not in self.known:
            self.known[workspace_id] = (await self.links.settings(workspace_id)).reopen_window
        return self.known[workspace_id]


class TicketingService:
    def __init__(self, db: PgDatabase, hooks: Sequence[TicketHook] = ()) -> None:
        self.db = db
        self.hooks = list(hooks)

    async def after_change(self, uow: PgUnitOfWork, before: Ticket | None, after: Ticket,
                           change: TicketChange) -> None:
        """Run every hook, in order, in the transaction of the change."""
        for hook in self.hooks:
            await hook.after_change(uow, before, after, change)

    async def thread_inbound(self, items: Sequence[Delivered[InboundMessage | None]]) -> list[UUID]:
        """Continue the ticket each message answers, or open one, in one transaction and in
        order (a reply later in the batch finds the ticket its parent opened). Once per event
        and per interaction: consuming the same interaction twice changes nothing. Returns
        the tickets that received a message."""
        touched: list[UUID] = []
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(THREADING_CONSUMER, [d.event_id for d in items])
            claimed = [d.item for d in items if d.item is not None and d.event_id in fresh]
            # A message from a contact merged away belongs to its survivor.
            contacts = await ContactRedirects(uow.conn).resolve(
                (m.workspace_id, m.contact_id) for m in claimed)
            store = TicketsStore(uow.conn)
            windows = _ReopenWindows(LinksStore(uow.conn))
            for message in (replace(m, contact_id=contacts[m.workspace_id, m.contact_id]) for m in claimed):
                if await store.is_threaded(message.workspace_id, message.interaction_id):
                    continue  # the same interaction under another event id
                found = await store.ticket_for_keys(message.workspace_id, parent_keys(message))
                previous = None if found is None else await store.get(message.workspace_id, found,
                                                                      for_update=True)
                follow_up_of = None
                if previous is not None and opens_follow_up(
                        previous, message.occurred_at, await windows.get(message.workspace_id)):
                    follow_up_of, previous = previous.id, None
                if previous is None:
                    ticket = Ticket(
                        id=uuid7(), workspace_id=message.workspace_id, contact_id=message.contact_id,
                        channel=message.channel, subject=message.subject, status=TicketStatus.NEW,
                        message_count=0, created_at=message.occurred_at,
                        requester_kind=message.sender_kind, requester=message.sender,
                    )
                    await store.insert_ticket(ticket)
                    await store.add_keys(ticket.workspace_id, ticket.id, [token_key(ticket_token(ticket.id))])
                    if follow_up_of is not None:
                        await LinksStore(uow.conn).link(message.workspace_id, ticket.id, follow_up_of,
                                                        LinkKind.FOLLOW_UP, SYSTEM)
                    uow.add(ticket_created(replace(ticket, message_count=1), message.interaction_id,
                                           follow_up_of))
                    ticket_id, before, fields = ticket.id, None, tuple[str, ...]()
                else:
                    ticket_id = previous.id
                    before, fields = await self._reopen(uow, store, message, previous)
                if not await store.add_message(ticket_id, message):
                    # Another transaction threaded this interaction after our check: start
                    # over, so that what it did is seen and no second ticket is opened.
                    raise TransientError("the interaction was threaded concurrently")
                # A follow-up takes over the conversation: later messages in it come to it.
                await store.add_keys(message.workspace_id, ticket_id, own_keys(message),
                                     repoint=follow_up_of is not None)
                after = await store.get(message.workspace_id, ticket_id)
                if after is not None:
                    await self.after_change(uow, before, after, TicketChange(
                        actor=SYSTEM, created=before is None, fields=fields, message=MessageKind.INBOUND))
                touched.append(ticket_id)
        return touched

    @staticmethod
    async def _reopen(uow: PgUnitOfWork, store: TicketsStore, message: InboundMessage,
                      before: Ticket) -> tuple[Ticket, tuple[str, ...]]:
        """The customer wrote again: a pending, on-hold or solved ticket (solved within the
        reopen window) goes back to open, by "system", in the transaction that threads the
        message (so once per interaction). Returns the ticket as it was and the fields that
        changed."""
        after, changes = reopened_by_reply(before, datetime.now(UTC))
        if not changes:
            return before, ()
        await store.update_fields(after)
        await store.add_history(after, SYSTEM, changes)
        for event in ticket_changed(before, after, [c.field for c in changes], SYSTEM,
                                    message.interaction_id):
            uow.add(event)
        return before, tuple(c.field for c in changes)

    async def update_ticket(self, workspace_id: str, actor: str, ticket_id: UUID, raw: dict[str, Any],
                            expected_version: int) -> Ticket:
        """Set a ticket's status, priority, type and tags at once, or nothing: every field is
        checked first (InvalidFields names each bad one), the status move must be allowed
        (InvalidTransition), and ``expected_version`` must be the current one
        (VersionMismatch). One history row per changed field, and the events, in the same
        transaction."""
        async with self.db.unit_of_work() as uow:
            definitions = (await custom_fields.definitions(uow.conn, workspace_id)
                           if "custom_fields" in raw else {})
            values = parse_changes(raw, definitions)
            store = TicketsStore(uow.conn)
            before = await store.get(workspace_id, ticket_id, for_update=True)
            if before is None:
                raise NotFound("ticket")
            if before.version != expected_version:
                raise VersionMismatch(before.version)
            after, fields = await self.change_fields(uow, before, values, actor)
            if fields:
                await self.after_change(uow, before, after, TicketChange(actor=actor, fields=fields))
        return after

    @staticmethod
    async def change_fields(uow: PgUnitOfWork, before: Ticket, values: dict[str, Any], actor: str
                            ) -> tuple[Ticket, tuple[str, ...]]:
        """Apply ``values`` (from ``parse_changes``) to ``before``, locked in ``uow``'s
        transaction: the fields, one history row per changed one, and the events. Returns the
        ticket after and the changed fields; the caller runs the hooks (a reply runs them once
        for its message and its changes)."""
        after, changes = apply_changes(before, values, datetime.now(UTC))
        if changes:
            store = TicketsStore(uow.conn)
            await store.update_fields(after)
            await store.add_history(after, actor, changes)
            for event in ticket_changed(before, after, [c.field for c in changes], actor):
                uow.add(event)
        return after, tuple(c.field for c in changes)

    async def history(self, workspace_id: str, ticket_id: UUID, cursor: str | None, limit: int
                      ) -> HistoryPage:
        """A ticket's changes, newest first. NotFound outside the workspace."""
        before_id: int | None = None
        if cursor:
            try:
                [raw] = decode_page_cursor(_HISTORY_CURSOR, cursor, 1)
            except PageCursorError as exc:
                raise InvalidCursor("the cursor is not one this API gave out") from exc
            if not isinstance(raw, int) or isinstance(raw, bool):
                raise InvalidCursor("the cursor is not one this API gave out")
            before_id = raw
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            store = TicketsStore(conn)
            if await store.get(workspace_id, ticket_id) is None:
                raise NotFound("ticket")
            entries = await store.history(workspace_id, ticket_id, before_id, limit + 1)
        page = entries[:limit]
        more = len(entries) > limit
        return HistoryPage(page, encode_page_cursor(_HISTORY_CURSOR, [page[-1].id]) if more else None)

    async def merge_contacts(self, items: Sequence[Delivered[ContactMerge]]) -> int:
        """Give each loser's tickets to its survivor and redirect the loser's later messages
        there, each merge in one transaction and once per event. Replies keep threading into
        the same tickets: thread keys name tickets, not contacts. Returns the tickets moved."""
        moved = 0
        for delivered in items:
            merge = delivered.item
            async with self.db.unit_of_work() as uow:
                if not await uow.claim(MERGES_CONSUMER, delivered.event_id):
                    continue
                survivor = await ContactRedirects(uow.conn).merge(
                    delivered.workspace_id, merge.loser_id, merge.survivor_id)
                if survivor is not None:
                    moved += await TicketsStore(uow.conn).move_to_contact(
                        delivered.workspace_id, merge.loser_id, survivor)
        return moved

    async def get_ticket(self, workspace_id: str, ticket_id: UUID) -> Ticket | None:
        """The ticket with the values of its custom fields that are defined now."""
        async with self.db.pool.acquire() as conn:
            ticket = await TicketsStore(conn).get(workspace_id, ticket_id)
            if ticket is None or not ticket.custom_fields:
                return ticket
            definitions = await custom_fields.definitions(conn, workspace_id)
        return replace(ticket, custom_fields=defined_only(definitions, dict(ticket.custom_fields)))

    async def list_tickets(self, workspace_id: str, contact_id: UUID | None, cursor: str | None,
                           limit: int) -> TicketPage:
        try:
            after = decode_cursor(cursor) if cursor else None
        except ValueError as exc:
            raise InvalidCursor("the cursor is not one this API gave out") from exc
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            tickets = await TicketsStore(conn).list(workspace_id, contact_id, after, limit + 1)
            if any(t.custom_fields for t in tickets):
                definitions = await custom_fields.definitions(conn, workspace_id)
                tickets = [replace(t, custom_fields=defined_only(definitions, dict(t.custom_fields)))
                           for t in tickets]
        page = tickets[:limit]
        more = len(tickets) > limit
        return TicketPage(page, encode_cursor(page[-1].created_at, page[-1].id) if more else None)

    async def personal_data(self, workspace_id: str, contact_ids: list[UUID]
                            ) -> dict[str, list[dict[str, Any]]]:
        """Everything ticketing holds about a person (the contact and the ids merged into it),
        for their data export: their tickets, the messages threaded into them (replies and
        notes too), the keys that thread replies, and their survey answers. One more than
        ``MAX_ITEMS`` of each, so that a cut shows."""
        async with self.db.pool.acquire() as conn:
            store = TicketsStore(conn)
            return {
                "tickets": await store.tickets_of(workspace_id, contact_ids, MAX_ITEMS + 1),
                "messages": await store.messages_of(workspace_id, contact_ids, MAX_ITEMS + 1),
                "thread_keys": await store.thread_keys_of(workspace_id, contact_ids, MAX_ITEMS + 1),
                "csat_surveys": await CsatStore(conn).of_contacts(workspace_id, contact_ids, MAX_ITEMS + 1),
            }

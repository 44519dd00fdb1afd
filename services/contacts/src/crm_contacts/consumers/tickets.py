"""crm.tickets.v1 -> the requester's timeline (a ticket opened)."""

from __future__ import annotations

from datetime import UTC
from uuid import UUID

from crm.common.v1 import common_pb2
from crm.ticketing.v1 import events_pb2
from crm_contacts.domain.events import TICKET_CREATED
from crm_contacts.domain.model import ContactTimelineEntry, TimelineEntry, summarise
from crm_contacts.service import ContactsService
from crmkit.kafka import Envelope, Handlers, PermanentError, consume


def ticket_entry(envelope: Envelope, created: events_pb2.TicketCreated) -> ContactTimelineEntry:
    ticket = created.ticket
    try:
        contact_id = UUID(ticket.contact_id)
    except ValueError as exc:
        raise PermanentError(f"ticket without a valid contact id: {exc}") from exc
    entry = TimelineEntry(
        entry_id=f"ticket:{ticket.id}",
        kind="ticket",
        channel=common_pb2.Channel.Name(ticket.channel).removeprefix("CHANNEL_").lower(),
        direction="internal",
        summary=summarise(f"Ticket opened: {ticket.subject}" if ticket.subject else "Ticket opened", ""),
        occurred_at=ticket.created_at.ToDatetime(tzinfo=UTC),
    )
    return ContactTimelineEntry(contact_id, entry)


def tickets_handlers(service: ContactsService) -> Handlers:
    return consume(TICKET_CREATED, events_pb2.TicketCreated, ticket_entry, service.record_timeline_entries,
                   workspace_of=lambda created: created.ticket.workspace_id)

"""Proto <-> domain mapping for ticketing."""

from __future__ import annotations

from datetime import UTC
from uuid import UUID

from crm.common.v1 import common_pb2
from crm.contacts.v1 import events_pb2 as contacts_events
from crm.ingest.v1 import events_pb2 as ingest_events
from crm.ticketing.v1 import events_pb2, ticketing_pb2
from crm_ticketing.domain import events
from crm_ticketing.domain.model import ContactMerge, InboundMessage, Ticket
from crmkit.kafka import Event, make_event
from crmkit.topics import TICKETS


def inbound_message_of(recorded: ingest_events.InteractionRecorded) -> InboundMessage:
    item = recorded.interaction
    return InboundMessage(
        interaction_id=item.id,
        workspace_id=item.workspace_id,
        contact_id=UUID(item.contact_id),
        channel=common_pb2.Channel.Name(item.channel).removeprefix("CHANNEL_").lower(),
        subject=item.subject,
        message_id=item.thread.message_id,
        in_reply_to=item.thread.in_reply_to,
        references=tuple(item.thread.references),
        conversation_id=item.thread.conversation_id,
        occurred_at=item.occurred_at.ToDatetime(tzinfo=UTC),
    )


def contact_merge_of(merged: contacts_events.ContactMerged) -> ContactMerge:
    """Raises ValueError for ids that are not UUIDs, or a contact merged into itself."""
    merge = ContactMerge(loser_id=UUID(merged.loser_id), survivor_id=UUID(merged.survivor_id))
    if merge.loser_id == merge.survivor_id:
        raise ValueError("a contact merged into itself")
    return merge


def ticket_to_proto(ticket: Ticket) -> ticketing_pb2.Ticket:
    message = ticketing_pb2.Ticket(
        id=str(ticket.id),
        workspace_id=ticket.workspace_id,
        contact_id=str(ticket.contact_id),
        channel=f"CHANNEL_{ticket.channel.upper()}",
        subject=ticket.subject,
        status=f"TICKET_STATUS_{ticket.status.name}",
        message_count=ticket.message_count,
    )
    message.created_at.FromDatetime(ticket.created_at)
    return message


def ticket_created(ticket: Ticket, interaction_id: str) -> Event:
    return make_event(
        topic=TICKETS, type=events.TICKET_CREATED, source=events.SOURCE,
        workspace=ticket.workspace_id, subject=str(ticket.contact_id),
        payload=events_pb2.TicketCreated(ticket=ticket_to_proto(ticket), interaction_id=interaction_id),
    )

"""Proto <-> domain mapping for ticketing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

from google.protobuf.message import Message

from crm.common.v1 import common_pb2
from crm.contacts.v1 import events_pb2 as contacts_events
from crm.ingest.v1 import events_pb2 as ingest_events
from crm.ingest.v1 import interaction_pb2, outbound_pb2
from crm.ticketing.v1 import events_pb2, ticketing_pb2
from crm_ticketing.domain import events
from crm_ticketing.domain.model import ContactMerge, InboundMessage, Ticket, TicketStatus
from crm_ticketing.domain.replies import DeliveryReport, SentReply
from crmkit.contacts import identity
from crmkit.kafka import Event, make_event
from crmkit.topics import OUTBOUND, TICKETS


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
        text=item.text,
        sender_kind=common_pb2.IdentityKind.Name(item.sender.kind).removeprefix("IDENTITY_KIND_").lower(),
        sender=item.sender.value,
        attachments=tuple(
            {"ref": f"/v1/interactions/{item.id}/attachments/{a.index}", "filename": a.filename,
             "content_type": a.content_type, "size": a.size}
            for a in item.attachments if a.stored),
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


def ticket_created(ticket: Ticket, interaction_id: str, follow_up_of: UUID | None = None) -> Event:
    return make_event(
        topic=TICKETS, type=events.TICKET_CREATED, source=events.SOURCE,
        workspace=ticket.workspace_id, subject=str(ticket.contact_id),
        payload=events_pb2.TicketCreated(ticket=ticket_to_proto(ticket), interaction_id=interaction_id,
                                         follow_up_of=str(follow_up_of) if follow_up_of else ""),
    )


def ticket_fields_to_proto(ticket: Ticket) -> events_pb2.TicketFields:
    fields = events_pb2.TicketFields(
        priority=f"TICKET_PRIORITY_{ticket.priority.name}",
        type=f"TICKET_TYPE_{ticket.type.name}" if ticket.type else "TICKET_TYPE_UNSPECIFIED",
        tags=list(ticket.tags),
        version=ticket.version,
        team_id=str(ticket.team_id or ""),
        assignee=ticket.assignee or "",
    )
    fields.custom_fields.update(dict(ticket.custom_fields))
    if ticket.updated_at is not None:
        fields.updated_at.FromDatetime(ticket.updated_at)
    if ticket.solved_at is not None:
        fields.solved_at.FromDatetime(ticket.solved_at)
    return fields


def ticket_changed(before: Ticket, after: Ticket, changed: list[str], actor: str,
                   interaction_id: str = "") -> list[Event]:
    """``ticket.updated`` for any change, and beside it ``ticket.solved`` when the ticket went
    to solved or ``ticket.reopened`` when it went from solved back to open."""

    def event(type_: str, payload: Message) -> Event:
        return make_event(topic=TICKETS, type=type_, source=events.SOURCE, workspace=after.workspace_id,
                          subject=str(after.contact_id), payload=payload)

    ticket, fields = ticket_to_proto(after), ticket_fields_to_proto(after)
    found = [event(events.TICKET_UPDATED, events_pb2.TicketUpdated(
        ticket=ticket, fields=fields, changed=changed, actor=actor))]
    if after.status is TicketStatus.SOLVED and before.status is not TicketStatus.SOLVED:
        found.append(event(events.TICKET_SOLVED, events_pb2.TicketSolved(ticket=ticket, fields=fields,
                                                                         actor=actor)))
    elif before.status is TicketStatus.SOLVED and after.status is TicketStatus.OPEN:
        found.append(event(events.TICKET_REOPENED, events_pb2.TicketReopened(
            ticket=ticket, fields=fields, actor=actor, interaction_id=interaction_id)))
    return found


def outbound_to_requester(ticket: Ticket, outbound_id: str, text: str, *, subject: str = "",
                          html: str = "", in_reply_to: str = "", references: Sequence[str] = (),
                          conversation_id: str = "", reference: str = "") -> Event:
    """A message to the ticket's requester on the ticket's channel, for ingest to deliver
    (crm.outbound.v1). ``outbound_id`` is unique per message: ingest delivers an id once.
    ``reference`` comes back on its DeliveryUpdated (the ticket id when empty)."""
    message = outbound_pb2.OutboundMessage(
        id=outbound_id, contact_id=str(ticket.contact_id), channel=f"CHANNEL_{ticket.channel.upper()}",
        recipient=identity(ticket.requester_kind, ticket.requester), subject=subject, text=text,
        html=html, thread=interaction_pb2.ThreadKeys(in_reply_to=in_reply_to, references=list(references),
                                                     conversation_id=conversation_id),
        origin=events.ORIGIN, reference=reference or str(ticket.id))
    return make_event(topic=OUTBOUND, type=events.OUTBOUND_REQUESTED, source=events.SOURCE,
                      workspace=ticket.workspace_id, subject=str(ticket.contact_id), payload=message)


def ticket_assigned(before: Ticket, after: Ticket, *, queue_id: UUID | None, actor: str,
                    reason: str) -> Event:
    """``ticket.assigned``: the ticket's team or assignee went from ``before``'s to ``after``'s."""
    return make_event(
        topic=TICKETS, type=events.TICKET_ASSIGNED, source=events.SOURCE, workspace=after.workspace_id,
        subject=str(after.contact_id),
        payload=events_pb2.TicketAssigned(
            ticket=ticket_to_proto(after), fields=ticket_fields_to_proto(after),
            team_id=str(after.team_id or ""), assignee=after.assignee or "",
            previous_assignee=before.assignee or "", previous_team_id=str(before.team_id or ""),
            queue_id=str(queue_id or ""), actor=actor, reason=reason))


def message_added(ticket: Ticket, message_id: str, kind: str, author: str, occurred_at: datetime,
                  macro_id: UUID | None = None) -> Event:
    """``message.added``: an agent's reply or note, without its text."""
    payload = events_pb2.TicketMessageAdded(
        ticket_id=str(ticket.id), workspace_id=ticket.workspace_id, contact_id=str(ticket.contact_id),
        message_id=message_id, kind=kind, author=author, macro_id=str(macro_id) if macro_id else "")
    payload.occurred_at.FromDatetime(occurred_at)
    return make_event(topic=TICKETS, type=events.MESSAGE_ADDED, source=events.SOURCE,
                      workspace=ticket.workspace_id, subject=str(ticket.contact_id), payload=payload)


def sent_reply_of(recorded: ingest_events.InteractionRecorded) -> SentReply:
    """An outbound interaction ingest recorded: which request it delivered, as what message."""
    item = recorded.interaction
    return SentReply(workspace_id=item.workspace_id, outbound_id=item.outbound_id,
                     message_id=item.thread.message_id)


def delivery_report_of(update: ingest_events.DeliveryUpdated, workspace_id: str) -> DeliveryReport:
    return DeliveryReport(workspace_id=workspace_id, outbound_id=update.outbound_id, status=update.status,
                          error=update.error[:1000],
                          at=update.at.ToDatetime(tzinfo=UTC) if update.HasField("at") else None)

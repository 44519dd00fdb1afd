"""Lead scoring's inputs: behaviour from crm.interactions.v1, crm.tickets.v1 and
crm.campaigns.v1, contacts' attributes and merges from crm.contacts.v1.

Scoring consumes beside the other parts of pipeline on the same topics (``alongside``), even
the same event types, with its own processed-event ids: a retry after one part failed redoes
nothing another part did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC
from typing import Any, TypeVar
from uuid import UUID

from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from crm.campaigns.v1 import events_pb2 as campaigns_pb2
from crm.common.v1 import common_pb2
from crm.contacts.v1 import events_pb2 as contacts_pb2
from crm.ingest.v1 import events_pb2 as ingest_pb2
from crm.ingest.v1 import interaction_pb2
from crm.ticketing.v1 import events_pb2 as tickets_pb2
from crm_pipeline.consumers.contacts import contact_merge
from crm_pipeline.domain.events import (
    CAMPAIGN_MESSAGE_CLICKED,
    CAMPAIGN_MESSAGE_OPENED,
    CONTACT_CREATED,
    CONTACT_MERGED,
    CONTACT_UPDATED,
    INTERACTION_RECORDED,
    TICKET_CREATED,
)
from crm_pipeline.domain.scoring import Behaviour, BehaviourSeen, ContactAttributes, ContactSeen
from crm_pipeline.service.scoring import LeadScoring
from crmkit.kafka import Delivered, Envelope, Handlers, PermanentError, combine, consume
from crmkit.topics import CAMPAIGNS, CONTACTS, INTERACTIONS, TICKETS

T = TypeVar("T")

_CHATS = frozenset({common_pb2.CHANNEL_CHAT, common_pb2.CHANNEL_WHATSAPP, common_pb2.CHANNEL_MESSENGER,
                    common_pb2.CHANNEL_INSTAGRAM, common_pb2.CHANNEL_TELEGRAM, common_pb2.CHANNEL_SMS})


def interaction_behaviour(envelope: Envelope, recorded: ingest_pb2.InteractionRecorded
                          ) -> BehaviourSeen | None:
    """An order placed, or a message the contact sent: an email or a chat (any messaging
    channel). Messages sent to them, auto-replies, bounces and refunds are no behaviour."""
    item = recorded.interaction
    if item.kind == interaction_pb2.INTERACTION_KIND_ORDER:
        kind = Behaviour.ORDER_PLACED
    elif (item.kind != interaction_pb2.INTERACTION_KIND_MESSAGE
          or item.direction != interaction_pb2.DIRECTION_INBOUND):
        return None
    elif item.channel == common_pb2.CHANNEL_EMAIL:
        kind = Behaviour.EMAIL_RECEIVED
    elif item.channel in _CHATS:
        kind = Behaviour.CHAT_MESSAGE
    else:
        return None
    return _seen(item.contact_id, kind, item.occurred_at, envelope)


def ticket_behaviour(envelope: Envelope, created: tickets_pb2.TicketCreated) -> BehaviourSeen | None:
    return _seen(created.ticket.contact_id, Behaviour.TICKET_OPENED, created.ticket.created_at, envelope)


def opened_behaviour(envelope: Envelope, opened: campaigns_pb2.MessageOpened) -> BehaviourSeen | None:
    return _seen(opened.contact_id, Behaviour.EMAIL_OPENED, opened.at, envelope)


def clicked_behaviour(envelope: Envelope, clicked: campaigns_pb2.MessageClicked) -> BehaviourSeen | None:
    return _seen(clicked.contact_id, Behaviour.EMAIL_CLICKED, clicked.at, envelope)


def contact_seen(envelope: Envelope, message: Any) -> ContactSeen:
    """The attributes rules test, from a ContactCreated or ContactUpdated."""
    contact = message.contact
    try:
        contact_id = UUID(contact.id)
    except ValueError as exc:
        raise PermanentError("a contact without a valid id") from exc
    return ContactSeen(contact_id, contact.version, ContactAttributes(
        lifecycle_stage=contact.lifecycle_stage, owner_id=contact.owner_id, tags=tuple(contact.tags),
        companies=tuple(link.company_id for link in contact.companies),
        custom_fields=MessageToDict(contact.custom_fields)))


def _seen(contact_id: str, kind: Behaviour, at: Timestamp, envelope: Envelope) -> BehaviourSeen | None:
    """None for an event of no known contact (nothing to score); the event's time when the
    payload has none."""
    try:
        contact = UUID(contact_id)
    except ValueError:
        return None
    occurred_at = at.ToDatetime(tzinfo=UTC) if at.seconds or at.nanos else envelope.time.astimezone(UTC)
    return BehaviourSeen(contact, kind, occurred_at)


def _known(apply: Callable[[list[Delivered[T]]], Awaitable[object]]
           ) -> Callable[[list[Delivered[T | None]]], Awaitable[object]]:
    """``apply`` for the deliveries that converted to something."""
    async def known(items: list[Delivered[T | None]]) -> object:
        found = [Delivered(d.event_id, d.workspace_id, d.item) for d in items if d.item is not None]
        return await apply(found) if found else 0
    return known


def scoring_handlers(scoring: LeadScoring) -> dict[str, Handlers]:
    """Scoring's handlers per topic; main.py runs them ``alongside`` pipeline's others."""
    behaviour = _known(scoring.record_behaviour)
    return {
        INTERACTIONS: consume(INTERACTION_RECORDED, ingest_pb2.InteractionRecorded, interaction_behaviour,
                              behaviour, workspace_of=lambda m: m.interaction.workspace_id),
        TICKETS: consume(TICKET_CREATED, tickets_pb2.TicketCreated, ticket_behaviour, behaviour,
                         workspace_of=lambda m: m.ticket.workspace_id),
        CAMPAIGNS: combine(
            consume(CAMPAIGN_MESSAGE_OPENED, campaigns_pb2.MessageOpened, opened_behaviour, behaviour,
                    workspace_of=lambda m: m.workspace_id),
            consume(CAMPAIGN_MESSAGE_CLICKED, campaigns_pb2.MessageClicked, clicked_behaviour, behaviour,
                    workspace_of=lambda m: m.workspace_id)),
        CONTACTS: combine(
            consume(CONTACT_CREATED, contacts_pb2.ContactCreated, contact_seen, scoring.record_contacts,
                    workspace_of=lambda m: m.contact.workspace_id),
            consume(CONTACT_UPDATED, contacts_pb2.ContactUpdated, contact_seen, scoring.record_contacts,
                    workspace_of=lambda m: m.contact.workspace_id),
            consume(CONTACT_MERGED, contacts_pb2.ContactMerged, contact_merge, scoring.merge_contacts,
                    workspace_of=lambda m: m.workspace_id)),
    }


def alongside(*handlers: Handlers) -> Handlers:
    """One topic's handlers for parts of the service that consume it independently, even the
    same event types: each part sees every record, in order, one part after the other. Each
    claims its own event ids, so a redelivery after one part failed is a no-op for the others."""

    async def one(envelope: Envelope) -> None:
        for h in handlers:
            await h.one(envelope)

    async def batch(envelopes: Sequence[Envelope]) -> None:
        for h in handlers:
            await h.batch(envelopes)

    return Handlers(one, batch, frozenset().union(*(h.event_types for h in handlers)))


def with_scoring(existing: dict[str, Handlers], scoring: LeadScoring) -> dict[str, Handlers]:
    """Pipeline's consumers per topic with scoring's added beside them."""
    topics = dict(existing)
    for topic, handlers in scoring_handlers(scoring).items():
        topics[topic] = alongside(topics[topic], handlers) if topic in topics else handlers
    return topics

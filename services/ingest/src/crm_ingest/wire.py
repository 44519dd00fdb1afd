"""Proto <-> domain mapping for ingest."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from crm.common.v1 import common_pb2
from crm.ingest.v1 import events_pb2, interaction_pb2, outbound_pb2, raw_pb2
from crm_ingest.domain import events
from crm_ingest.domain.interaction import Interaction
from crm_ingest.domain.message import Order
from crm_ingest.outbound.base import OutboundRequest
from crmkit.contacts import identity
from crmkit.ids import uuid7
from crmkit.kafka import Envelope, Event, PermanentError, make_event, partition_key
from crmkit.topics import INGEST_RAW, INTERACTIONS, OUTBOUND


def channel_name(channel: str) -> str:
    """The proto enum label of a channel ("email" -> "CHANNEL_EMAIL")."""
    return f"CHANNEL_{channel.upper()}"


def channel_of(channel: int) -> str:
    """A proto channel as the domain names it (CHANNEL_WHATSAPP -> "whatsapp")."""
    return common_pb2.Channel.Name(channel).removeprefix("CHANNEL_").lower()


def interaction_to_proto(item: Interaction) -> interaction_pb2.Interaction:
    message = interaction_pb2.Interaction(
        id=item.id,
        workspace_id=item.workspace_id,
        contact_id=item.contact_id,
        channel=channel_name(item.channel),
        direction=f"DIRECTION_{item.direction.upper()}",
        sender=identity(item.sender_kind, item.sender),
        sender_name=item.sender_name,
        recipients=[identity(item.sender_kind, r) for r in item.recipients],
        thread=interaction_pb2.ThreadKeys(
            message_id=item.message_id, in_reply_to=item.in_reply_to, references=list(item.references),
            conversation_id=item.conversation_id,
        ),
        subject=item.subject,
        text=item.text,
        media=[interaction_pb2.MediaRef(kind=m.kind, provider_id=m.provider_id, mime_type=m.mime_type,
                                        caption=m.caption, filename=m.filename, sha256=m.sha256)
               for m in item.media],
        kind=f"INTERACTION_KIND_{item.kind.upper()}",
        quoted_text=item.quoted_text,
        has_html=item.has_html,
        attachments=[interaction_pb2.Attachment(index=a.index, filename=a.filename,
                                                content_type=a.content_type, size=a.size,
                                                sha256=a.sha256, stored=a.stored)
                     for a in item.attachments],
        metadata=item.metadata,
        outbound_id=item.outbound_id,
    )
    if item.order is not None:
        message.order.CopyFrom(order_to_proto(item.order))
    message.occurred_at.FromDatetime(item.occurred_at)
    message.received_at.FromDatetime(item.received_at)
    return message


def order_to_proto(order: Order) -> interaction_pb2.Order:
    return interaction_pb2.Order(
        order_id=order.order_id,
        total=common_pb2.Money(amount_minor=order.total_minor, currency=order.currency),
        items=[interaction_pb2.OrderItem(
            sku=i.sku, name=i.name, quantity=i.quantity,
            unit_price=common_pb2.Money(amount_minor=i.unit_price_minor, currency=order.currency))
            for i in order.items],
        status=order.status,
    )


def interaction_recorded(item: Interaction, trace: Mapping[str, str] | None = None) -> Event:
    return make_event(
        trace=trace,
        topic=INTERACTIONS,
        type=events.INTERACTION_RECORDED,
        source=events.SOURCE,
        workspace=item.workspace_id,
        subject=item.contact_id,
        payload=events_pb2.InteractionRecorded(interaction=interaction_to_proto(item)),
    )


def raw_received(workspace_id: str, channel: str, source: str, content_type: str,
                 payload: bytes, sender: str | None) -> Event:
    """Keyed by the sender where it is known, so one person's messages keep their order."""
    raw = raw_pb2.RawInbound(channel=channel_name(channel), source=source,
                             content_type=content_type, payload=payload)
    raw.received_at.FromDatetime(datetime.now(UTC))
    raw_id = str(uuid7())
    return make_event(topic=INGEST_RAW, type=events.RAW_RECEIVED, source=events.SOURCE,
                      workspace=workspace_id, subject=raw_id, payload=raw, event_id=raw_id,
                      key=partition_key(workspace_id, f"{channel}:{sender or raw_id}"))


def delivery_updated(workspace_id: str, contact_id: str, interaction_id: str, channel: str,
                     status: str, at: datetime, *, error: str = "", outbound_id: str = "",
                     origin: str = "", reference: str = "",
                     trace: Mapping[str, str] | None = None) -> Event:
    payload = events_pb2.DeliveryUpdated(
        interaction_id=interaction_id, contact_id=contact_id, channel=channel_name(channel),
        status=status, error=error, outbound_id=outbound_id, origin=origin, reference=reference)
    payload.at.FromDatetime(at)
    return make_event(trace=trace, topic=INTERACTIONS, type=events.DELIVERY_UPDATED,
                      source=events.SOURCE, workspace=workspace_id, subject=contact_id or interaction_id,
                      payload=payload)


def reaction_recorded(workspace_id: str, contact_id: str, interaction_id: str, channel: str,
                      emoji: str, at: datetime, trace: Mapping[str, str] | None = None) -> Event:
    payload = events_pb2.ReactionRecorded(interaction_id=interaction_id, contact_id=contact_id,
                                          channel=channel_name(channel), emoji=emoji)
    payload.at.FromDatetime(at)
    return make_event(trace=trace, topic=INTERACTIONS, type=events.REACTION_RECORDED,
                      source=events.SOURCE, workspace=workspace_id, subject=contact_id,
                      payload=payload)


def identity_kind_of(kind: int) -> str:
    """A proto identity kind as contacts names it (IDENTITY_KIND_CHAT_VISITOR -> "chat_visitor")."""
    return common_pb2.IdentityKind.Name(kind).removeprefix("IDENTITY_KIND_").lower()


def outbound_request(envelope: Envelope, message: outbound_pb2.OutboundMessage) -> OutboundRequest:
    """An OutboundMessage as the outbound worker takes it; PermanentError for one that can
    never be delivered as it is."""
    if not message.id or len(message.id) > 200:
        raise PermanentError("an outbound message needs an id of at most 200 characters")
    if message.channel not in common_pb2.Channel.values() or not message.channel:
        raise PermanentError("an outbound message needs a channel")
    if not message.recipient.value:
        raise PermanentError("an outbound message needs a recipient")
    return OutboundRequest(
        id=message.id,
        workspace_id=envelope.workspace,
        contact_id=message.contact_id,
        channel=channel_of(message.channel),
        recipient_kind=identity_kind_of(message.recipient.kind),
        recipient=message.recipient.value,
        text=message.text,
        cc=tuple(i.value for i in message.cc),
        subject=message.subject,
        html=message.html,
        in_reply_to=message.thread.in_reply_to,
        references=tuple(message.thread.references),
        conversation_id=message.thread.conversation_id,
        headers=dict(message.headers),
        from_address=message.from_address,
        origin=message.origin,
        reference=message.reference,
    )


def outbound_requested(request: OutboundRequest) -> Event:
    """The event a requester (ticketing, campaigns, a test) publishes on crm.outbound.v1."""
    message = outbound_pb2.OutboundMessage(
        id=request.id, contact_id=request.contact_id, channel=channel_name(request.channel),
        recipient=identity(request.recipient_kind, request.recipient),
        cc=[identity(request.recipient_kind, c) for c in request.cc], subject=request.subject,
        text=request.text, html=request.html,
        thread=interaction_pb2.ThreadKeys(in_reply_to=request.in_reply_to,
                                          references=list(request.references),
                                          conversation_id=request.conversation_id),
        headers=request.headers, from_address=request.from_address, origin=request.origin,
        reference=request.reference)
    return make_event(topic=OUTBOUND, type=events.OUTBOUND_REQUESTED,
                      source=f"/crm/{request.origin}" if request.origin else events.SOURCE,
                      workspace=request.workspace_id, subject=request.contact_id or request.id,
                      payload=message)

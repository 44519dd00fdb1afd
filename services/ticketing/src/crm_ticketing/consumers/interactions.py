"""crm.interactions.v1 -> tickets, and news of the replies ingest sent."""

from __future__ import annotations

from crm.ingest.v1 import events_pb2, interaction_pb2
from crm_ticketing.domain.events import DELIVERY_UPDATED, INTERACTION_RECORDED, ORIGIN
from crm_ticketing.domain.model import InboundMessage
from crm_ticketing.domain.replies import DeliveryReport, SentReply
from crm_ticketing.service import TicketingService
from crm_ticketing.service.conversation import Conversation
from crm_ticketing.wire import delivery_report_of, inbound_message_of, sent_reply_of
from crmkit.kafka import Delivered, Envelope, Handlers, PermanentError, combine, consume

# INTERACTION_KIND_UNSPECIFIED: published before interactions had a kind, always a message.
_PERSON_WROTE = (interaction_pb2.INTERACTION_KIND_UNSPECIFIED, interaction_pb2.INTERACTION_KIND_MESSAGE)


def inbound_message(envelope: Envelope, recorded: events_pb2.InteractionRecorded) -> InboundMessage | None:
    """The message to thread; None for what ticketing does not thread: our own replies, and
    what no person wrote (auto-replies, bounces, commerce orders)."""
    if recorded.interaction.direction != interaction_pb2.DIRECTION_INBOUND:
        return None  # replies continue tickets through ticketing itself
    if recorded.interaction.kind not in _PERSON_WROTE:
        return None
    try:
        return inbound_message_of(recorded)
    except ValueError as exc:
        raise PermanentError(f"interaction without a valid contact id: {exc}") from exc


def recorded_interaction(envelope: Envelope, recorded: events_pb2.InteractionRecorded
                         ) -> InboundMessage | SentReply | None:
    """An outbound interaction that delivered an OutboundMessage (possibly one of our
    replies) with a message id; else what ``inbound_message`` makes of it."""
    item = recorded.interaction
    if item.direction == interaction_pb2.DIRECTION_OUTBOUND and item.outbound_id and item.thread.message_id:
        return sent_reply_of(recorded)
    return inbound_message(envelope, recorded)


def delivery_report(envelope: Envelope, update: events_pb2.DeliveryUpdated) -> DeliveryReport | None:
    """News about a message ticketing asked for; None for others' (campaigns')."""
    if update.origin != ORIGIN or not update.outbound_id:
        return None
    return delivery_report_of(update, envelope.workspace)


def interactions_handlers(service: TicketingService, conversation: Conversation) -> Handlers:
    async def recorded(items: list[Delivered[InboundMessage | SentReply | None]]) -> None:
        # The sent replies first: a customer's answer later in the batch finds their keys.
        sent = [Delivered(d.event_id, d.workspace_id, d.item) for d in items if isinstance(d.item, SentReply)]
        if sent:
            await conversation.record_sent(sent)
        inbound = [Delivered(d.event_id, d.workspace_id, d.item) for d in items
                   if not isinstance(d.item, SentReply)]
        if inbound:
            await service.thread_inbound(inbound)

    async def deliveries(items: list[Delivered[DeliveryReport | None]]) -> None:
        reports = [Delivered(d.event_id, d.workspace_id, d.item) for d in items if d.item is not None]
        if reports:
            await conversation.record_delivery(reports)

    return combine(
        consume(INTERACTION_RECORDED, events_pb2.InteractionRecorded, recorded_interaction, recorded,
                workspace_of=lambda recorded: recorded.interaction.workspace_id),
        consume(DELIVERY_UPDATED, events_pb2.DeliveryUpdated, delivery_report, deliveries),
    )

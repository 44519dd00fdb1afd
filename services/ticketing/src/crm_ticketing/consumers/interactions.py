"""crm.interactions.v1 -> tickets."""

from __future__ import annotations

from crm.ingest.v1 import events_pb2, interaction_pb2
from crm_ticketing.domain.events import INTERACTION_RECORDED
from crm_ticketing.domain.model import InboundMessage
from crm_ticketing.service import TicketingService
from crm_ticketing.wire import inbound_message_of
from crmkit.kafka import Envelope, Handlers, PermanentError, consume

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


def interactions_handlers(service: TicketingService) -> Handlers:
    return consume(INTERACTION_RECORDED, events_pb2.InteractionRecorded, inbound_message,
                   service.thread_inbound,
                   workspace_of=lambda recorded: recorded.interaction.workspace_id)

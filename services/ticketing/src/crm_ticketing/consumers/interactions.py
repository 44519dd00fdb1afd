"""crm.interactions.v1 -> tickets."""

from __future__ import annotations

from crm.ingest.v1 import events_pb2, interaction_pb2
from crm_ticketing.domain.events import INTERACTION_RECORDED
from crm_ticketing.service import TicketingService
from crm_ticketing.wire import inbound_message_of
from crmkit.kafka import Envelope, Handler, PermanentError, on_event


def interactions_handler(service: TicketingService) -> Handler:
    async def apply(envelope: Envelope, recorded: events_pb2.InteractionRecorded) -> None:
        if recorded.interaction.workspace_id != envelope.workspace:
            raise PermanentError("payload workspace differs from the envelope's")
        if recorded.interaction.direction != interaction_pb2.DIRECTION_INBOUND:
            return  # replies continue tickets through ticketing itself
        try:
            message = inbound_message_of(recorded)
        except ValueError as exc:
            raise PermanentError(f"interaction without a valid contact id: {exc}") from exc
        await service.thread_inbound(envelope.id, message)

    return on_event(INTERACTION_RECORDED, events_pb2.InteractionRecorded, apply)

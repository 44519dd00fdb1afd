"""crm.interactions.v1 -> activity per contact (counted), and each message as an activity on
its contact's open deals."""

from __future__ import annotations

from datetime import UTC
from uuid import UUID

from crm.common.v1 import common_pb2
from crm.ingest.v1 import events_pb2, interaction_pb2
from crm_pipeline.domain.activities import StreamMessage, stream_kind
from crm_pipeline.domain.events import INTERACTION_RECORDED
from crm_pipeline.domain.model import InteractionSeen
from crm_pipeline.service import PipelineService
from crm_pipeline.service.activities import Activities
from crmkit.kafka import Delivered, Envelope, Handlers, PermanentError, consume


def interaction_message(envelope: Envelope, recorded: events_pb2.InteractionRecorded) -> StreamMessage:
    item = recorded.interaction
    try:
        contact_id = UUID(item.contact_id)
    except ValueError as exc:
        raise PermanentError("interaction without a valid contact id") from exc
    channel = common_pb2.Channel.Name(item.channel).removeprefix("CHANNEL_").lower()
    kind = interaction_pb2.InteractionKind.Name(item.kind).removeprefix("INTERACTION_KIND_").lower()
    outbound = item.direction == interaction_pb2.DIRECTION_OUTBOUND
    return StreamMessage(interaction_id=item.id, contact_id=contact_id, kind=stream_kind(channel, kind),
                         direction="outbound" if outbound else "inbound", subject=item.subject,
                         text=item.text, occurred_at=item.occurred_at.ToDatetime(tzinfo=UTC))


def interactions_handlers(service: PipelineService, activities: Activities) -> Handlers:
    """Counted first, then linked to deals: each step claims its own event ids, so a retry after
    the second failed does not count again."""

    async def apply(items: list[Delivered[StreamMessage]]) -> None:
        await service.record_interactions(
            [Delivered(d.event_id, d.workspace_id, InteractionSeen(d.item.contact_id, d.item.occurred_at))
             for d in items])
        await activities.record_interactions(items)

    return consume(INTERACTION_RECORDED, events_pb2.InteractionRecorded, interaction_message, apply,
                   workspace_of=lambda recorded: recorded.interaction.workspace_id)

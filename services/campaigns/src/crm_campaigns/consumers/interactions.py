"""crm.interactions.v1 -> engagement per contact."""

from __future__ import annotations

from datetime import UTC
from uuid import UUID

from crm.ingest.v1 import events_pb2
from crm_campaigns.domain.events import INTERACTION_RECORDED
from crm_campaigns.domain.model import InteractionSeen
from crm_campaigns.service import CampaignsService
from crmkit.kafka import Envelope, Handlers, PermanentError, consume


def interaction_seen(envelope: Envelope, recorded: events_pb2.InteractionRecorded) -> InteractionSeen:
    item = recorded.interaction
    try:
        contact_id = str(UUID(item.contact_id))
    except ValueError as exc:
        raise PermanentError("interaction without a valid contact id") from exc
    return InteractionSeen(contact_id, item.occurred_at.ToDatetime(tzinfo=UTC))


def interactions_handlers(service: CampaignsService) -> Handlers:
    return consume(INTERACTION_RECORDED, events_pb2.InteractionRecorded, interaction_seen,
                   service.record_interactions,
                   workspace_of=lambda recorded: recorded.interaction.workspace_id)

"""Conversions: deals won (crm.pipeline.v1) and orders (crm.interactions.v1), attributed to the
contact's last campaign click."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

from crm.ingest.v1 import events_pb2 as ingest_events
from crm.ingest.v1 import interaction_pb2
from crm.pipeline.v1 import events_pb2 as pipeline_events
from crm_campaigns.domain.events import DEAL_WON, INTERACTION_RECORDED
from crm_campaigns.domain.reports import Conversion
from crm_campaigns.service.tracking import TrackingService
from crmkit.kafka import Envelope, Handlers, consume


def deal_conversion(envelope: Envelope, won: pipeline_events.DealWon) -> Conversion | None:
    deal = won.deal
    if not deal.contact_id:
        return None
    at = deal.closed_at.ToDatetime(tzinfo=UTC) if deal.HasField("closed_at") else envelope.time
    return Conversion("deal", deal.id, deal.contact_id, at, deal.amount_minor, deal.currency)


def order_conversion(envelope: Envelope, recorded: ingest_events.InteractionRecorded) -> Conversion | None:
    item = recorded.interaction
    if item.kind != interaction_pb2.INTERACTION_KIND_ORDER or not item.contact_id:
        return None
    at = item.occurred_at.ToDatetime(tzinfo=UTC) if item.HasField("occurred_at") else envelope.time
    reference = item.order.order_id or item.id
    return Conversion("order", reference, item.contact_id, at, item.order.total.amount_minor,
                      item.order.total.currency)


def pipeline_handlers(tracking: TrackingService) -> Handlers:
    return consume(DEAL_WON, pipeline_events.DealWon, deal_conversion, tracking.attribute,
                   workspace_of=lambda won: won.deal.workspace_id)


def order_handlers(tracking: TrackingService) -> Handlers:
    return consume(INTERACTION_RECORDED, ingest_events.InteractionRecorded, order_conversion,
                   tracking.attribute)


def alongside(first: Handlers, second: Handlers) -> Handlers:
    """Both handlers for the same events (e.g. engagement counting and orders, both on
    interaction.recorded): ``combine`` keeps one handler per type, this runs the two in turn.
    Each claims its events under its own consumer name, so a redelivery is safe for both."""

    async def one(envelope: Envelope) -> None:
        await first.one(envelope)
        await second.one(envelope)

    async def batch(envelopes: Sequence[Envelope]) -> None:
        await first.batch(envelopes)
        await second.batch(envelopes)

    return Handlers(one, batch, first.event_types | second.event_types)

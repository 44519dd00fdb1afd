"""crm.interactions.v1 delivery updates -> campaign sends' statuses (sent, delivered, bounced,
failed); a bounce puts the address on the suppression list, a complaint unsubscribes."""

from __future__ import annotations

from crm.ingest.v1 import events_pb2
from crm_campaigns.domain.events import DELIVERY_UPDATED
from crm_campaigns.service.campaigns import Campaigns
from crm_campaigns.wire import DeliveryReport, delivery_of
from crmkit.kafka import Delivered, Envelope, Handlers, consume


def delivery_report(envelope: Envelope, update: events_pb2.DeliveryUpdated) -> DeliveryReport | None:
    """News about a campaign message; None for others' (ticketing's replies)."""
    return delivery_of(update)


def deliveries_handlers(campaigns: Campaigns) -> Handlers:
    async def apply(items: list[Delivered[DeliveryReport | None]]) -> None:
        reports = [Delivered(d.event_id, d.workspace_id, d.item) for d in items if d.item is not None]
        if reports:
            await campaigns.record_deliveries(reports)

    return consume(DELIVERY_UPDATED, events_pb2.DeliveryUpdated, delivery_report, apply)

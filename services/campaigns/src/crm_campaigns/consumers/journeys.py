"""Journey triggers and exit signals from crm.contacts.v1 (segment joined), crm.pipeline.v1
(deal stage changed, won, lost), crm.tickets.v1 (ticket solved), crm.interactions.v1 (orders)
and crm.campaigns.v1 (unsubscribed): one handler set per topic, for main to put beside the
topic's other consumers."""

from __future__ import annotations

from crm.campaigns.v1 import events_pb2 as campaign_events
from crm.contacts.v1 import events_pb2 as contact_events
from crm.ingest.v1 import events_pb2 as ingest_events
from crm.ingest.v1 import interaction_pb2
from crm.pipeline.v1 import events_pb2 as pipeline_events
from crm.ticketing.v1 import events_pb2 as ticket_events
from crm_campaigns.domain import events
from crm_campaigns.service.journeys import JourneysService, Signal
from crmkit.kafka import Envelope, Handlers, combine, consume


def segment_signal(_: Envelope, changed: contact_events.SegmentMembershipChanged) -> Signal | None:
    if not changed.member or not changed.contact_id:
        return None
    return Signal("segment_joined", changed.contact_id, segment_id=changed.segment_id)


def stage_signal(_: Envelope, changed: pipeline_events.DealStageChanged) -> Signal | None:
    if not changed.deal.contact_id:
        return None
    return Signal("deal_stage_changed", changed.deal.contact_id, stage=changed.to_stage_id)


def won_signal(_: Envelope, won: pipeline_events.DealWon) -> Signal | None:
    return Signal("deal_won", won.deal.contact_id) if won.deal.contact_id else None


def lost_signal(_: Envelope, lost: pipeline_events.DealLost) -> Signal | None:
    return Signal("deal_lost", lost.deal.contact_id) if lost.deal.contact_id else None


def solved_signal(_: Envelope, solved: ticket_events.TicketSolved) -> Signal | None:
    return Signal("ticket_solved", solved.ticket.contact_id) if solved.ticket.contact_id else None


def order_signal(_: Envelope, recorded: ingest_events.InteractionRecorded) -> Signal | None:
    item = recorded.interaction
    if item.kind != interaction_pb2.INTERACTION_KIND_ORDER or not item.contact_id:
        return None
    return Signal("purchase", item.contact_id)


def unsubscribed_signal(_: Envelope, gone: campaign_events.RecipientUnsubscribed) -> Signal | None:
    return Signal("unsubscribed", gone.contact_id) if gone.contact_id else None


def contacts_journey_handlers(service: JourneysService) -> Handlers:
    return consume(events.SEGMENT_MEMBERSHIP_CHANGED, contact_events.SegmentMembershipChanged,
                   segment_signal, service.on_signals, workspace_of=lambda m: m.workspace_id)


def pipeline_journey_handlers(service: JourneysService) -> Handlers:
    """Stage changes and losses; deal.won is in ``won_journey_handlers`` (tracking consumes it too)."""
    return combine(
        consume(events.DEAL_STAGE_CHANGED, pipeline_events.DealStageChanged, stage_signal,
                service.on_signals),
        consume(events.DEAL_LOST, pipeline_events.DealLost, lost_signal, service.on_signals))


def won_journey_handlers(service: JourneysService) -> Handlers:
    return consume(events.DEAL_WON, pipeline_events.DealWon, won_signal, service.on_signals)


def tickets_journey_handlers(service: JourneysService) -> Handlers:
    return consume(events.TICKET_SOLVED, ticket_events.TicketSolved, solved_signal, service.on_signals)


def orders_journey_handlers(service: JourneysService) -> Handlers:
    return consume(events.INTERACTION_RECORDED, ingest_events.InteractionRecorded, order_signal,
                   service.on_signals)


def campaigns_journey_handlers(service: JourneysService) -> Handlers:
    return consume(events.RECIPIENT_UNSUBSCRIBED, campaign_events.RecipientUnsubscribed, unsubscribed_signal,
                   service.on_signals)

"""crm.outbound.v1 -> messages delivered on their channels (the outbound worker)."""

from __future__ import annotations

from crm.ingest.v1 import outbound_pb2
from crm_ingest.domain.events import OUTBOUND_REQUESTED
from crm_ingest.outbound.worker import OutboundService, Requested
from crm_ingest.wire import outbound_request
from crmkit.kafka import Envelope, Handlers, consume


def requested(envelope: Envelope, message: outbound_pb2.OutboundMessage) -> Requested:
    return Requested(outbound_request(envelope, message), envelope.trace)


def outbound_handlers(service: OutboundService) -> Handlers:
    """Each request is delivered on its own, in the order of its key (workspace and contact);
    a fetched batch is delivered in that order too, stopping at the first failure."""
    return consume(OUTBOUND_REQUESTED, outbound_pb2.OutboundMessage, requested, service.deliver_all)

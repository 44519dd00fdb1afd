"""crm.ingest.raw.v1 -> interactions (the worker behind every channel adapter)."""

from __future__ import annotations

from datetime import UTC

from crm.common.v1 import common_pb2
from crm.ingest.v1 import raw_pb2
from crm_ingest.domain.events import RAW_RECEIVED
from crm_ingest.service import IngestService, RawMessage
from crm_ingest.wire import channel_of
from crmkit.kafka import Envelope, Handlers, PermanentError, consume


def raw_message(envelope: Envelope, raw: raw_pb2.RawInbound) -> RawMessage:
    if raw.channel not in common_pb2.Channel.values():
        raise PermanentError(f"unknown channel {raw.channel}")
    received_at = raw.received_at.ToDatetime(tzinfo=UTC) if raw.HasField("received_at") else envelope.time
    return RawMessage(channel_of(raw.channel), raw.payload, received_at, envelope.trace,
                      source=raw.source, content_type=raw.content_type)


def raw_handlers(service: IngestService) -> Handlers:
    return consume(RAW_RECEIVED, raw_pb2.RawInbound, raw_message, service.process_raw)

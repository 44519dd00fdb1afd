"""crm.ingest.raw.v1 -> interactions (the worker behind every channel adapter)."""

from __future__ import annotations

from datetime import UTC

from crm.common.v1 import common_pb2
from crm.ingest.v1 import raw_pb2
from crm_ingest.domain.events import RAW_RECEIVED
from crm_ingest.service import IngestService
from crmkit.kafka import Envelope, Handler, PermanentError


def raw_handler(service: IngestService) -> Handler:
    async def handle(envelope: Envelope) -> None:
        if envelope.type != RAW_RECEIVED:
            raise PermanentError(f"unexpected event type {envelope.type!r} on the raw topic")
        raw = envelope.parse(raw_pb2.RawInbound)
        assert isinstance(raw, raw_pb2.RawInbound)
        if raw.channel != common_pb2.CHANNEL_EMAIL:
            raise PermanentError(f"no adapter for channel {common_pb2.Channel.Name(raw.channel)}")
        received_at = (raw.received_at.ToDatetime(tzinfo=UTC) if raw.HasField("received_at")
                       else envelope.time)
        await service.process_email(envelope.workspace, envelope.id, raw.payload, received_at)

    return handle

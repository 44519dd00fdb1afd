"""Only what a person wrote opens or continues a ticket."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from crm.ingest.v1 import events_pb2
from crm_ticketing.consumers.interactions import inbound_message
from crmkit.kafka import Envelope
from crmkit.testing import interaction_event


def envelope_of(kind: str) -> tuple[Envelope, events_pb2.InteractionRecorded]:
    event = interaction_event("ws", str(uuid4()), str(uuid4()), datetime(2026, 11, 24, tzinfo=UTC),
                              subject="Out of office", message_id="m@example.com", kind=kind)
    envelope = event.envelope
    recorded = envelope.parse(events_pb2.InteractionRecorded)
    assert isinstance(recorded, events_pb2.InteractionRecorded)
    return envelope, recorded


@pytest.mark.parametrize("kind", ["auto_reply", "bounce", "order", "refund"])
def test_what_no_person_wrote_is_not_threaded(kind: str) -> None:
    assert inbound_message(*envelope_of(kind)) is None


@pytest.mark.parametrize("kind", ["message", "unspecified"])
def test_a_message_is_threaded(kind: str) -> None:
    message = inbound_message(*envelope_of(kind))
    assert message is not None
    assert message.subject == "Out of office"

"""What an interaction becomes on its contact's timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from crm.common.v1 import common_pb2
from crm.ingest.v1 import events_pb2, interaction_pb2
from crm_contacts.wire import money_text, timeline_entry_of


def recorded(**fields: object) -> events_pb2.InteractionRecorded:
    defaults = {"id": str(uuid4()), "workspace_id": "ws", "contact_id": str(uuid4()),
                "channel": common_pb2.CHANNEL_EMAIL, "direction": interaction_pb2.DIRECTION_INBOUND}
    item = interaction_pb2.Interaction(**{**defaults, **fields})
    item.occurred_at.FromDatetime(datetime(2026, 11, 24, tzinfo=UTC))
    return events_pb2.InteractionRecorded(interaction=item)


def test_a_message_is_an_interaction_line_with_its_subject() -> None:
    entry = timeline_entry_of(recorded(subject="Where is my order?", text="...")).entry
    assert (entry.kind, entry.summary) == ("interaction", "Where is my order?")


def test_an_order_is_a_purchase_line_with_its_amount() -> None:
    order = interaction_pb2.Order(order_id="#1001", total=common_pb2.Money(amount_minor=4990, currency="EUR"))
    entry = timeline_entry_of(recorded(kind=interaction_pb2.INTERACTION_KIND_ORDER, order=order,
                                       channel=common_pb2.CHANNEL_COMMERCE)).entry
    assert (entry.kind, entry.channel, entry.summary) == ("order", "commerce", "Order #1001: 49.90 EUR")


def test_a_bounce_is_marked_as_one() -> None:
    bounce = recorded(kind=interaction_pb2.INTERACTION_KIND_BOUNCE, subject="Undelivered")
    entry = timeline_entry_of(bounce).entry
    assert entry.kind == "bounce"


@pytest.mark.parametrize(("amount", "currency", "text"), [
    (4990, "EUR", "49.90 EUR"), (5, "USD", "0.05 USD"), (1200, "JPY", "1200 JPY"),
    (1234, "KWD", "1.234 KWD"), (-250, "GBP", "-2.50 GBP")])
def test_amounts_read_in_their_currencys_minor_unit(amount: int, currency: str, text: str) -> None:
    assert money_text(amount, currency) == text

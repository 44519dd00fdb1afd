import json
from datetime import UTC, datetime
from typing import Any

import pytest

from crm_ingest.domain import signing
from crm_ingest.domain.commerce import (
    MalformedCommerce,
    NotCommerce,
    format_minor,
    parse_commerce,
    read_event,
    record,
)
from crm_ingest.domain.message import InboundMessage, Order, OrderItem

STORE = "acme-shop"
SECRET = b"store-secret-0123456789abcdef-0123456789"


def event(**more: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "id": "evt_8812", "type": "order.paid", "occurred_at": "2026-11-23T12:00:00Z",
        "order_id": "1001", "currency": "EUR", "total_minor": 4599,
        "items": [{"sku": "TEE-M", "name": "T-shirt", "quantity": 2, "unit_price_minor": 1999},
                  {"sku": "SHIP", "name": "Shipping", "quantity": 1, "unit_price_minor": 601}],
        "customer": {"email": "Ada@Example.com", "phone": "+4915112345678", "name": "Ada Lovelace"},
    }
    found.update(more)
    return found


def message_of(data: dict[str, Any]) -> InboundMessage:
    """An event as the worker gets it: checked at the endpoint, then parsed from its record."""
    found = read_event(json.dumps(data).encode())
    assert found is not None
    return parse_commerce(record(STORE, found[1]))


# --- the signature (domain/signing.py's scheme, with the store's secret) --------------------

def test_a_store_signs_the_timestamp_and_the_body_with_its_secret() -> None:
    body = json.dumps(event()).encode()
    now = 1_790_000_000
    headers = signing.signed_headers(SECRET, body, now=now)
    verify = signing.verify
    assert verify([SECRET], body, headers["X-Crm-Timestamp"], headers["X-Crm-Signature"], now) \
        is signing.Verdict.VALID
    assert verify([SECRET], body + b" ", headers["X-Crm-Timestamp"], headers["X-Crm-Signature"], now) \
        is signing.Verdict.FORGED
    assert verify([SECRET], body, headers["X-Crm-Timestamp"], headers["X-Crm-Signature"], now + 301) \
        is signing.Verdict.STALE


# --- the worker's parse ---------------------------------------------------------------------

def test_a_paid_order_is_an_order_interaction_of_the_customer_by_email() -> None:
    message = message_of(event())
    assert (message.channel, message.kind, message.message_id) == (
        "commerce", "order", "order.paid:acme-shop:1001")
    assert (message.sender_kind, message.sender, message.sender_name) == (
        "email", "ada@example.com", "Ada Lovelace")
    assert message.sent_at == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert message.order == Order("1001", 4599, "EUR", (OrderItem("TEE-M", "T-shirt", 2, 1999),
                                                        OrderItem("SHIP", "Shipping", 1, 601)), "paid")
    assert message.text == "Order 1001 paid: 45.99 EUR, 3 items"
    assert message.conversation_id == "acme-shop:1001"
    assert message.metadata == {"store": STORE, "event_type": "order.paid", "event_id": "evt_8812"}


def test_a_customer_with_only_a_phone_is_a_phone_identity() -> None:
    message = message_of(event(type="order.created", customer={"phone": "+4915112345678"}))
    assert (message.sender_kind, message.sender) == ("phone", "+4915112345678")
    assert message.text == "Order 1001 placed: 45.99 EUR, 3 items"
    assert message.message_id == "order.created:acme-shop:1001"  # not the paid event's id


def test_a_refund_is_its_own_interaction_with_the_amount_refunded() -> None:
    message = message_of(event(type="refund.created", refund_id="rf_1", total_minor=1999,
                               items=[{"sku": "TEE-M", "name": "T-shirt", "quantity": 1,
                                       "unit_price_minor": 1999}]))
    assert (message.kind, message.message_id) == ("refund", "refund.created:acme-shop:1001:rf_1")
    assert message.order is not None
    assert (message.order.total_minor, message.order.status) == (1999, "refunded")
    assert message.text == "Refund of 19.99 EUR on order 1001"
    assert message.metadata["refund_id"] == "rf_1"


@pytest.mark.parametrize(("amount", "currency", "shown"), [
    (4599, "EUR", "45.99"), (5, "USD", "0.05"), (4599, "JPY", "4599"), (12345, "KWD", "12.345"),
    (0, "EUR", "0.00")])
def test_amounts_are_shown_in_the_currencys_major_unit(amount: int, currency: str, shown: str) -> None:
    assert format_minor(amount, currency) == shown


# --- what is refused, where -----------------------------------------------------------------

@pytest.mark.parametrize(("change", "field"), [
    ({"total_minor": 45.99}, "total_minor"),
    ({"total_minor": 4599.0}, "total_minor"),
    ({"total_minor": -1}, "total_minor"),
    ({"total_minor": "4599"}, "total_minor"),
    ({"total_minor": True}, "total_minor"),
    ({"items": [{"sku": "x", "quantity": 1, "unit_price_minor": 19.99}]}, "items/0/unit_price_minor"),
    ({"items": [{"sku": "x", "quantity": 0, "unit_price_minor": 1}]}, "items/0/quantity"),
    ({"currency": "eur"}, "currency"),
    ({"currency": "XYZ"}, "currency"),
    ({"currency": "XAU"}, "currency"),
    ({"occurred_at": "2026-11-23T12:00:00"}, "occurred_at"),
    ({"order_id": ""}, "order_id"),
    ({"customer": {"name": "Nobody"}}, "customer"),
    ({"customer": {"email": "not-an-address"}}, "customer/email"),
    ({"customer": {"phone": "0151 1234 5678"}}, "customer/phone"),
    ({"type": "refund.created"}, "refund_id"),
], ids=["float", "float-integral", "negative", "string", "boolean", "item-float", "item-zero-quantity",
        "lower-case-currency", "unknown-currency", "metal", "naive-time", "no-order-id", "no-identity",
        "bad-email", "national-phone", "refund-without-id"])
def test_a_bad_field_is_refused_at_the_endpoint_and_named(change: dict[str, Any], field: str) -> None:
    with pytest.raises(NotCommerce) as refused:
        read_event(json.dumps(event(**change)).encode())
    assert field in str(refused.value)
    assert "Example.com" not in str(refused.value)  # values (personal data) are not echoed


def test_other_event_types_are_acknowledged_and_not_kept() -> None:
    assert read_event(json.dumps(event(type="customer.updated")).encode()) is None


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"order_id": "1"}', b'{"type": 1}', b"[" * 100_000])
def test_a_body_that_is_not_an_event_is_refused_at_the_endpoint(body: bytes) -> None:
    with pytest.raises(NotCommerce):
        read_event(body)


@pytest.mark.parametrize("raw", [
    b"", b"null", b'{"event": {}}', b'{"store": "s", "event": []}',
    record(STORE, event(total_minor=1.5)),  # a record written before a check existed
    record(STORE, {"type": "order.shipped"}),
], ids=["empty", "null", "no-store", "event-not-an-object", "float", "unknown-type"])
def test_a_record_that_cannot_be_stored_is_malformed_for_the_dead_letter_topic(raw: bytes) -> None:
    with pytest.raises(MalformedCommerce):
        parse_commerce(raw)

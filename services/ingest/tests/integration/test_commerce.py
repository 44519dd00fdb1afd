"""The commerce webhook: a store's signed order and refund events, to the customer's timeline."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from crm_ingest.domain.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_headers
from crmkit.ids import uuid7
from crmkit.testing import bearer

from .conftest import COMMERCE_SECRET, COMMERCE_STORE, WORKSPACE, Platform

pytestmark = pytest.mark.integration
LIMIT = 16 * 1024  # the platform's INGEST_MAX_COMMERCE_BYTES


def order_event(order_id: str, email: str, **more: Any) -> dict[str, Any]:
    return {"id": f"evt_{uuid7().hex}", "type": "order.paid", "occurred_at": "2026-01-05T09:30:00Z",
            "order_id": order_id, "currency": "EUR", "total_minor": 4599,
            "items": [{"sku": "TEE-M", "name": "T-shirt", "quantity": 2, "unit_price_minor": 1999},
                      {"sku": "SHIP", "name": "Shipping", "quantity": 1, "unit_price_minor": 601}],
            "customer": {"email": email, "name": "Ada Lovelace"}, **more}


def body_of(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def customer() -> str:
    return f"ada.{uuid7().hex[:12]}@example.com"


async def test_an_order_and_its_refund_are_the_customers_interactions_stored_once(platform: Platform) -> None:
    order_id, email = uuid7().hex[:10], customer()
    body = body_of(order_event(order_id, email))
    first = await platform.commerce(body)
    assert first.status_code == 202
    assert first.json()["status"] == "accepted"
    # A store retries: the same event again, and again signed afresh.
    assert (await platform.commerce(body)).status_code == 202
    resigned = signed_headers(COMMERCE_SECRET.encode(), body, now=time.time() + 1)
    assert (await platform.commerce(body, headers=resigned)).status_code == 202

    message_id = f"order.paid:{COMMERCE_STORE}:{order_id}"
    item = await platform.wait_stored(message_id, "commerce")
    assert (item["channel"], item["kind"], item["sender"], item["sender_name"]) == (
        "commerce", "order", email, "Ada Lovelace")
    assert item["text"] == f"Order {order_id} paid: 45.99 EUR, 3 items"
    assert item["order"] == {"order_id": order_id, "total_minor": 4599, "currency": "EUR", "status": "paid",
                             "items": order_event(order_id, email)["items"]}
    contact = (await platform.contacts.get(f"/v1/contacts/{item['contact_id']}",
                                           headers=bearer(platform.token))).json()
    assert {"kind": "email", "value": email} in contact["identities"]

    # A refund of the same order is the customer's too, as its own interaction.
    refund = order_event(order_id, email, type="refund.created", refund_id="rf_1", total_minor=1999,
                         items=[{"sku": "TEE-M", "name": "T-shirt", "quantity": 1, "unit_price_minor": 1999}])
    assert (await platform.commerce(body_of(refund))).status_code == 202
    refunded = await platform.wait_stored(f"refund.created:{COMMERCE_STORE}:{order_id}:rf_1", "commerce")
    assert (refunded["kind"], refunded["contact_id"], refunded["order"]["total_minor"]) == (
        "refund", item["contact_id"], 1999)
    interactions = platform.ingest_app.state.service.db.db.interactions
    assert await interactions.count_documents({"workspace_id": WORKSPACE, "sender": email}) == 2


async def test_forged_stale_and_foreign_requests_are_refused(platform: Platform) -> None:
    order_id = uuid7().hex[:10]
    body = body_of(order_event(order_id, customer()))
    now = int(time.time())
    stale = signed_headers(COMMERCE_SECRET.encode(), body, now=now - 600)
    forged = signed_headers(b"not-the-store-secret-0123456789abcdef", body)
    cases = [
        (await platform.commerce(body, headers=forged), 401, "invalid-signature"),
        (await platform.commerce(body, headers={}), 401, "invalid-signature"),
        (await platform.commerce(body, headers={**stale}), 401, "stale-signature"),
        (await platform.commerce(body, headers={TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: "v1=00"}), 401,
         "invalid-signature"),
        (await platform.commerce(body, store="another-shop"), 404, "not-found"),
        (await platform.commerce(b"x" * (LIMIT + 1)), 413, "too-large"),
    ]
    for response, status, slug in cases:
        assert (response.status_code, response.json()["type"].rsplit("/", 1)[1]) == (status, slug)
    never = await platform.interaction(f"order.paid:{COMMERCE_STORE}:{order_id}", "commerce")
    assert never.status_code == 404


@pytest.mark.parametrize(("change", "field"), [
    ({"total_minor": 45.99}, "total_minor"), ({"total_minor": -5}, "total_minor"),
    ({"currency": "EURO"}, "currency"), ({"customer": {"name": "Nobody"}}, "customer")],
    ids=["float", "negative", "currency", "no-identity"])
async def test_a_bad_amount_currency_or_customer_is_422(platform: Platform, change: dict[str, Any],
                                                        field: str) -> None:
    response = await platform.commerce(body_of({**order_event("1", customer()), **change}))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert field in response.json()["detail"]


async def test_event_types_not_taken_are_acknowledged(platform: Platform) -> None:
    response = await platform.commerce(body_of({"type": "customer.updated", "id": "evt_1"}))
    assert (response.status_code, response.json()) == (202, {"status": "ignored", "id": None})

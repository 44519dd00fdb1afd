"""Commerce webhooks: an e-commerce store's orders and refunds, as interactions of the customer
who placed them, so that purchase history reaches the timeline (and a customer's lifetime
value can be computed from it). Pure; reading never raises anything but NotCommerce (the
endpoint's 422) or MalformedCommerce (the worker's dead letter).

A store signs each request like the inbound-parse email webhook (``domain/signing.py``), with
its own secret. The body is one event::

    {"id": "evt_8812", "type": "order.paid", "occurred_at": "2026-11-23T12:00:00Z",
     "order_id": "1001", "currency": "EUR", "total_minor": 4599,
     "items": [{"sku": "TEE-M", "name": "T-shirt", "quantity": 2, "unit_price_minor": 1999}],
     "customer": {"email": "ada@example.com", "phone": "+4915112345678", "name": "Ada Lovelace"}}

Amounts are integers in the currency's minor unit (cents for EUR, yen for JPY); a float, a
negative amount or a currency that is not ISO 4217 is refused. ``refund.created`` names the
refund (``refund_id``) and its ``total_minor`` is the amount refunded."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from crm_ingest.domain.message import (
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    InboundMessage,
    MalformedMessage,
    Order,
    OrderItem,
    clean_text,
)
from crm_ingest.domain.twilio import E164

CHANNEL = "commerce"
EVENT_TYPES = ("order.created", "order.paid", "refund.created")
# How a webhook URL names a store.
STORE = r"^[A-Za-z0-9._-]{1,64}$"
_STATUS = {"order.created": "created", "order.paid": "paid", "refund.created": "refunded"}
_EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$"


def _codes(table: str) -> list[str]:
    return table.split()


# ISO 4217 currency codes in use (2025), funds codes included; precious metals, bond units
# and the testing and "no currency" codes are not what a store charges in.
CURRENCIES = frozenset(_codes("""
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD
    EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD
    IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL
    MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN
    PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP
    STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED
    VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
"""))
# Digits after the decimal point, where it is not 2.
_EXPONENTS = {
    **dict.fromkeys(_codes("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"), 0),
    **dict.fromkeys(_codes("BHD IQD JOD KWD LYD OMR TND"), 3),
    "CLF": 4, "UYW": 4,
}

# Integers only: a float (4599.0) or a boolean is refused, not rounded.
Minor = Annotated[StrictInt, Field(ge=0, le=10**15)]


class NotCommerce(ValueError):
    """The body is not a commerce event this endpoint takes (the endpoint answers 422)."""


class MalformedCommerce(MalformedMessage):
    """The record cannot become an interaction: it is dead-lettered with this reason."""


class Customer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: str | None = Field(default=None, max_length=320, pattern=_EMAIL)
    phone: str | None = Field(default=None, pattern=E164)  # E.164
    name: str = Field(default="", max_length=MAX_NAME_CHARS)

    @model_validator(mode="after")
    def _reachable(self) -> Customer:
        if not self.email and not self.phone:
            raise ValueError("a customer needs an email address or a phone number")
        return self


class Line(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sku: str = Field(default="", max_length=200)
    name: str = Field(default="", max_length=500)
    quantity: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    unit_price_minor: Minor


class CommerceEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(default="", max_length=200)  # the store's event id, kept as metadata
    type: Literal["order.created", "order.paid", "refund.created"]
    occurred_at: AwareDatetime
    order_id: str = Field(min_length=1, max_length=200)
    refund_id: str = Field(default="", max_length=200)  # refund.created: required
    currency: str
    total_minor: Minor  # refund.created: the amount refunded
    items: list[Line] = Field(default_factory=list, max_length=1000)
    customer: Customer

    @field_validator("currency")
    @classmethod
    def _iso_4217(cls, value: str) -> str:
        if value not in CURRENCIES:
            raise ValueError("not an ISO 4217 currency code (three capital letters, e.g. EUR)")
        return value

    @model_validator(mode="after")
    def _refund_named(self) -> CommerceEvent:
        if self.type == "refund.created" and not self.refund_id:
            raise ValueError("a refund.created event needs its refund_id")
        return self


# --- the endpoint: the body -> the event, checked ------------------------------------------

def read_event(body: bytes) -> tuple[CommerceEvent, dict[str, Any]] | None:
    """The event and the JSON object it came from; None for an event type not taken here
    (acknowledged, so that the store does not retry it). NotCommerce for a body that is not
    an event, or an event of a known type with a bad field."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise NotCommerce("the body is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise NotCommerce('not a commerce event (an object with a "type")')
    if data["type"] not in EVENT_TYPES:
        return None
    try:
        return CommerceEvent.model_validate(data), data
    except ValidationError as exc:
        raise NotCommerce(_describe(exc)) from exc


def record(store: str, data: dict[str, Any]) -> bytes:
    """The raw record of a store's event: the event as the store sent it, and the store."""
    return json.dumps({"store": store, "event": data}, separators=(",", ":")).encode()


def _describe(error: ValidationError) -> str:
    """The first few problems, by field path, without echoing the values."""
    problems = ["/".join(str(part) for part in e["loc"]) + ": " + e["msg"] for e in error.errors()[:5]]
    return "; ".join(problems)[:1000]


# --- the worker: one record -> an interaction of kind order or refund ----------------------

def parse_commerce(raw: bytes) -> InboundMessage:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedCommerce("not JSON") from exc
    store = data.get("store") if isinstance(data, dict) else None
    if not isinstance(store, str) or not store or not isinstance(data.get("event"), dict):
        raise MalformedCommerce("not a commerce event record")
    try:
        event = CommerceEvent.model_validate(data["event"])
    except (ValidationError, RecursionError) as exc:
        detail = _describe(exc) if isinstance(exc, ValidationError) else "too deep"
        raise MalformedCommerce(f"not a valid commerce event: {detail}") from exc
    return order_message(store, event)


def order_message(store: str, event: CommerceEvent) -> InboundMessage:
    refund = event.type == "refund.created"
    customer = event.customer
    # A store's order ids are its own (two stores both have an order 1001), and an order has
    # one event of each type; a refund is one of possibly several of its order.
    message_id = f"{event.type}:{store}:{event.order_id}" + (f":{event.refund_id}" if refund else "")
    metadata = {"store": store, "event_type": event.type}
    if event.id:
        metadata["event_id"] = clean_text(event.id)
    if refund:
        metadata["refund_id"] = clean_text(event.refund_id)
    order = Order(
        order_id=clean_text(event.order_id),
        total_minor=event.total_minor,
        currency=event.currency,
        items=tuple(OrderItem(clean_text(i.sku), clean_text(i.name), i.quantity, i.unit_price_minor)
                    for i in event.items),
        status=_STATUS[event.type],
    )
    return InboundMessage(
        channel=CHANNEL,
        message_id=clean_text(message_id)[:MAX_ID_CHARS],
        # The email address is who bought; a phone number only when there is no address.
        sender_kind="email" if customer.email else "phone",
        sender=customer.email.lower() if customer.email else customer.phone or "",
        sender_name=clean_text(customer.name).strip(),
        text=summary(event),
        sent_at=event.occurred_at,
        conversation_id=f"{store}:{clean_text(event.order_id)}",  # an order and its refunds
        kind="refund" if refund else "order",
        metadata=metadata,
        order=order,
    )


def summary(event: CommerceEvent) -> str:
    """The timeline's line: "Order 1001 paid: 45.99 EUR, 2 items"."""
    amount = f"{format_minor(event.total_minor, event.currency)} {event.currency}"
    order_id = clean_text(event.order_id)
    if event.type == "refund.created":
        return f"Refund of {amount} on order {order_id}"
    count = sum(line.quantity for line in event.items)
    items = f", {count} item{'s' if count != 1 else ''}" if count else ""
    verb = "paid" if event.type == "order.paid" else "placed"
    return f"Order {order_id} {verb}: {amount}{items}"


def format_minor(amount: int, currency: str) -> str:
    """An amount in minor units in major units: 4599 EUR -> "45.99", 4599 JPY -> "4599"."""
    exponent = _EXPONENTS.get(currency, 2)
    if exponent == 0:
        return str(amount)
    major, minor = divmod(amount, 10**exponent)
    return f"{major}.{minor:0{exponent}d}"

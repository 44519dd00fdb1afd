"""What the ingest benchmarks send: senders (known to contacts, or new), an email, a WhatsApp
and a Messenger message as their providers deliver them, and each adapter's endpoint with the
credentials it takes and the raw records it appends (built with ingest's own functions, so that
a baseline can send the very same records)."""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from crm_ingest.domain.email import sender_of
from crm_ingest.domain.meta import sign as meta_sign
from crm_ingest.wire import raw_received
from crmkit.kafka import Event

PHONE_NUMBER_ID = "100000000000777"  # the business number the WhatsApp deliveries are sent to
DISPLAY_NUMBER = "15550100777"
PAGE_ID = "200000000000777"  # the Facebook Page the Messenger deliveries are for
EMAIL_SOURCE = "bench"  # the signed inbound-parse webhook's source name
# The adapters' rate limits are set out of the way: the benchmark measures capacity.
UNLIMITED = {"rate_per_second": 1e9, "burst": 1_000_000}
Record = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers


# --- who writes, and what -------------------------------------------------------------------

@dataclass(frozen=True)
class Sender:
    kind: str  # the identity kind contacts resolves: email, whatsapp, messenger
    value: str  # as the worker asks contacts for it
    address: str  # as the channel carries it: the address, the wa_id, the PSID
    name: str


def make_sender(kind: str, n: int, known: bool) -> Sender:
    if kind == "email":
        address = f"customer{n}@customers.example" if known else f"prospect{n}@prospects.example"
        return Sender(kind, address, address, f"{'Customer' if known else 'Prospect'} {n}")
    if kind == "whatsapp":
        wa_id = f"{49151 if known else 49160}{n:08d}"  # German mobile numbers
        return Sender(kind, f"+{wa_id}", wa_id, f"{'Customer' if known else 'Prospect'} {n}")
    psid = f"{7100 if known else 7200}{n:012d}"
    return Sender(kind, psid, psid, "")


class Senders:
    """Who each message is from: one of ``known`` senders of its channel (put in contacts
    before the run), or, for a share ``new_share`` of the messages, someone never seen before
    (the worker's ResolveIdentities creates the contact)."""

    def __init__(self, known: int, new_share: float) -> None:
        self.known, self.new_share = known, new_share
        self.rng = random.Random(7)
        self.serial = 0
        self.new = 0
        self.distinct: set[tuple[str, str]] = set()  # (kind, value) of every sender handed out

    def next(self, kind: str) -> Sender:
        if self.rng.random() < self.new_share:
            self.serial += 1
            self.new += 1
            sender = make_sender(kind, self.serial, known=False)
        else:
            sender = make_sender(kind, self.rng.randrange(self.known), known=True)
        self.distinct.add((sender.kind, sender.value))
        return sender

    def all_known(self, kind: str) -> list[Sender]:
        return [make_sender(kind, n, known=True) for n in range(self.known)]


TEXT = ("Hello, my order has not arrived yet and the tracking page has not changed for three "
        "days. Could you tell me where it is? Thanks!")


def email_body(tag: str, serial: int, sender: Sender) -> bytes:
    """About 1 KB, as in ingest_e2e.py: a new message (no In-Reply-To)."""
    message = EmailMessage()
    message["From"] = f"{sender.name} <{sender.address}>"
    message["To"] = "support@acme.example"
    message["Subject"] = f"Where is my order {serial}?"
    message["Message-ID"] = f"<{tag}-{serial}@mail.example>"
    message["Date"] = format_datetime(datetime.now(UTC))
    message.set_content("\n".join([TEXT, "", *(f"Line {n} of the order details, kept for reference."
                                                for n in range(1, 9)), "", sender.name]))
    return message.as_bytes()


def whatsapp_body(tag: str, serial: int, sender: Sender) -> bytes:
    """One message in one delivery, as Meta's WhatsApp Cloud API sends it."""
    now = int(time.time())
    return json.dumps({"object": "whatsapp_business_account", "entry": [{
        "id": "300000000000777", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": sender.name}, "wa_id": sender.address}],
            "messages": [{"from": sender.address, "id": f"wamid.{tag}.{serial}", "timestamp": str(now),
                          "type": "text", "text": {"body": TEXT}}],
        }}]}]}, separators=(",", ":")).encode()


def messenger_body(tag: str, serial: int, sender: Sender) -> bytes:
    """One message in one delivery, as Meta's Messenger Platform sends it."""
    now = int(time.time() * 1000)
    return json.dumps({"object": "page", "entry": [{"id": PAGE_ID, "time": now, "messaging": [{
        "sender": {"id": sender.address}, "recipient": {"id": PAGE_ID}, "timestamp": now,
        "message": {"mid": f"m_{tag}.{serial}", "text": TEXT},
    }]}]}, separators=(",", ":")).encode()


# --- the adapters ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Adapter:
    name: str
    kind: str  # its senders' identity kind
    path: str
    content_type: str
    body: Callable[[str, int, Sender], bytes]
    credentials: Callable[[bytes], dict[str, str]]  # a bearer token, or the body's signature
    records: Callable[[bytes], list[Event]]  # what the endpoint appends to the raw topic for it


@dataclass(frozen=True)
class Secrets:
    whatsapp: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    messenger: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    email_source: str = field(default_factory=lambda: secrets.token_urlsafe(32))


def ingest_env(workspace: str, keys: Secrets, contacts_target: str) -> dict[str, str]:
    """The channels the adapters need, all mapped to the run's workspace."""
    return {
        "INGEST_CONTACTS_GRPC_TARGET": contacts_target,
        "INGEST_WHATSAPP_ACCOUNTS": json.dumps({PHONE_NUMBER_ID: {"workspace_id": workspace, **UNLIMITED}}),
        "INGEST_WHATSAPP_APP_SECRET": keys.whatsapp,
        "INGEST_WHATSAPP_VERIFY_TOKEN": secrets.token_urlsafe(24),
        "INGEST_MESSENGER_PAGES": json.dumps({PAGE_ID: {"workspace_id": workspace, **UNLIMITED}}),
        "INGEST_MESSENGER_APP_SECRET": keys.messenger,
        "INGEST_MESSENGER_VERIFY_TOKEN": secrets.token_urlsafe(24),
        "INGEST_EMAIL_SOURCES": json.dumps({EMAIL_SOURCE: {"workspace_id": workspace,
                                                           "secret": keys.email_source, **UNLIMITED}}),
    }


def adapters(paths: set[str], workspace: str, token: str, keys: Secrets) -> list[Adapter]:
    """The adapters the running ingest serves (its OpenAPI paths), in the order measured."""
    def email(raw: bytes, source: str) -> list[Event]:
        return [raw_received(workspace, "email", source, "message/rfc822", raw, sender_of(raw))]

    found = [Adapter("email, bearer token", "email", "/v1/channels/email/inbound", "message/rfc822",
                     email_body, lambda _: {"Authorization": f"Bearer {token}"},
                     lambda raw: email(raw, "email-http"))]
    signed = f"/v1/channels/email/sources/{EMAIL_SOURCE}/inbound"
    if "/v1/channels/email/sources/{source}/inbound" in paths:
        from crm_ingest.domain.signing import signed_headers

        found.append(Adapter("email, signed inbound-parse webhook", "email", signed, "message/rfc822",
                             email_body, lambda raw: signed_headers(keys.email_source.encode(), raw),
                             lambda raw: email(raw, f"email-webhook:{EMAIL_SOURCE}")))
    if "/v1/channels/whatsapp/webhook" in paths:
        from crm_ingest.domain.whatsapp import split_webhook

        found.append(Adapter(
            "WhatsApp Cloud API webhook", "whatsapp", "/v1/channels/whatsapp/webhook", "application/json",
            whatsapp_body, lambda body: {"X-Hub-Signature-256": meta_sign(keys.whatsapp.encode(), body)},
            lambda body: [raw_received(workspace, "whatsapp", "whatsapp-webhook", "application/json",
                                       item.payload, item.wa_id) for item in split_webhook(body).items]))
    if "/v1/channels/messenger/webhook" in paths:
        from crm_ingest.domain.messenger import split_messaging

        found.append(Adapter(
            "Messenger webhook", "messenger", "/v1/channels/messenger/webhook", "application/json",
            messenger_body, lambda body: {"X-Hub-Signature-256": meta_sign(keys.messenger.encode(), body)},
            lambda body: [raw_received(workspace, "messenger", "messenger-webhook", "application/json",
                                       item.payload, item.person)
                          for item in split_messaging("messenger", body).items]))
    return found


def as_records(events: Sequence[Event]) -> list[Record]:
    return [(e.key.encode(), e.envelope.data, e.envelope.headers()) for e in events]

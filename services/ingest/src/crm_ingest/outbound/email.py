"""Outbound email: an RFC 5322 message built from an OutboundRequest, sent to the configured
SMTP relay with aiosmtplib (one connection per message).

Threading: ``In-Reply-To`` is the message answered and ``References`` its chain followed by
it, each id in angle brackets, so that the reply joins the conversation in the person's mail
client. The ``Message-ID`` is derived from the workspace and the request id, so the same
request sent twice (a crash after the relay took it and before it was recorded) carries the
same Message-ID and is stored as the same interaction.

Headers a requester may add (``headers``): anything but the ones ingest writes itself
(``CONTROLLED_HEADERS``: addressing, identity, threading, date, subject, MIME structure).
A request naming one of those, or a header that is not a valid field, is refused for good
rather than sent with the header silently dropped: it is a bug in the requester, and its
DeliveryUpdated(failed) says which header.

SMTP replies: 5xx is permanent, 4xx (and no connection, a timeout, a dropped connection) is
transient. When the relay refuses some recipients but takes the message for others, the
message counts as sent, and the refused ones are kept in the interaction's metadata.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Literal

import aiosmtplib

from crm_ingest.outbound.base import DeliveryFailed, OutboundRequest, Sent
from crmkit.ids import derived_id

# Headers the message's own fields decide; a request may not set them.
CONTROLLED_HEADERS = frozenset({
    "from", "sender", "to", "cc", "bcc", "message-id", "in-reply-to", "references",
    "date", "subject", "mime-version", "content-type", "content-transfer-encoding",
    "content-disposition", "return-path",
})
MAX_REFERENCES = 50  # the newest ids of a long chain; mail clients thread on the last ones
_FIELD_NAME = re.compile(r"[!-9;-~]{1,76}")  # printable ASCII but ':' (RFC 5322 ftext)
_MAX_HEADER_CHARS = 998

TlsMode = Literal["none", "starttls", "tls"]


@dataclass(frozen=True)
class SmtpRelay:
    """Where outbound email goes, and how to talk to it."""

    host: str
    port: int
    tls: TlsMode = "starttls"  # none: plain; starttls: upgrade, required; tls: implicit TLS
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0


def mailbox(value: str) -> Address:
    """One address (``Name <local@domain>`` or ``local@domain``); ValueError otherwise."""
    if "\r" in value or "\n" in value:
        raise ValueError("an address may not contain a line break")
    try:
        header = policy.default.header_factory("from", value)
        addresses = header.addresses
        defects = header.defects
    except Exception as exc:  # the stdlib parser raises several kinds on odd input
        raise ValueError(f"not an email address: {value!r}") from exc
    if len(addresses) != 1 or defects or not addresses[0].domain or not addresses[0].username:
        raise ValueError(f"not one email address: {value!r}")
    address: Address = addresses[0]
    return address


def message_id_for(workspace_id: str, request_id: str, domain: str) -> str:
    """The Message-ID (without angle brackets) of a request: the same request, the same id."""
    return f"{derived_id('outbound-email', workspace_id, request_id).hex}@{domain}"


def _bare(message_id: str) -> str:
    message_id = message_id.strip()
    return message_id[1:-1].strip() if message_id.startswith("<") and message_id.endswith(">") else message_id


def _msg_id(message_id: str) -> str:
    bare = _bare(message_id)
    if not bare or any(c.isspace() or c in "<>" for c in bare):
        raise DeliveryFailed(f"not a message id: {message_id[:100]!r}", permanent=True)
    return f"<{bare}>"


def build_message(request: OutboundRequest, sender: Address, now: datetime) -> EmailMessage:
    """The message as it goes to the relay. DeliveryFailed (permanent) for a request that
    cannot become a valid message (an address, a header ingest controls, a bad header)."""
    try:
        to = mailbox(request.recipient)
        cc = [mailbox(c) for c in request.cc]
    except ValueError as exc:
        raise DeliveryFailed(str(exc), permanent=True) from exc
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = " ".join(request.subject.split())
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = f"<{message_id_for(request.workspace_id, request.id, sender.domain)}>"
    chain = [_msg_id(r) for r in request.references if r.strip()]
    if request.in_reply_to:
        parent = _msg_id(request.in_reply_to)
        message["In-Reply-To"] = parent
        if parent not in chain:
            chain.append(parent)
    if chain:
        message["References"] = " ".join(chain[-MAX_REFERENCES:])
    for name, value in request.headers.items():
        _check_header(name, value)
        message[name] = value
    if request.text or not request.html:
        message.set_content(request.text)
        if request.html:
            message.add_alternative(request.html, subtype="html")
    else:
        message.set_content(request.html, subtype="html")
    return message


def _check_header(name: str, value: str) -> None:
    if not _FIELD_NAME.fullmatch(name):
        raise DeliveryFailed(f"not a valid header name: {name[:80]!r}", permanent=True)
    if name.lower() in CONTROLLED_HEADERS:
        raise DeliveryFailed(f"header {name} is set by ingest and cannot be given", permanent=True)
    if "\r" in value or "\n" in value or len(name) + 2 + len(value) > _MAX_HEADER_CHARS:
        raise DeliveryFailed(f"header {name}: a line break, or longer than a header line may be",
                             permanent=True)


class EmailDelivery:
    """Sends email through one SMTP relay, from the request's ``from_address``, else the
    workspace's configured sender, else the default one."""

    channel = "email"

    def __init__(self, relay: SmtpRelay, senders: Mapping[str, str], default_sender: str = "") -> None:
        self.relay = relay
        self.senders = dict(senders)
        self.default_sender = default_sender

    def sender_of(self, request: OutboundRequest) -> Address:
        value = request.from_address or self.senders.get(request.workspace_id) or self.default_sender
        if not value:
            raise DeliveryFailed("no From address: none in the request and none configured "
                                 "for the workspace", permanent=True)
        try:
            return mailbox(value)
        except ValueError as exc:
            raise DeliveryFailed(f"From: {exc}", permanent=True) from exc

    async def send(self, message: OutboundRequest) -> Sent:
        sender = self.sender_of(message)
        now = datetime.now(UTC)
        email = build_message(message, sender, now)
        recipients = [mailbox(message.recipient).addr_spec, *(mailbox(c).addr_spec for c in message.cc)]
        relay = self.relay
        try:
            refused, _reply = await aiosmtplib.send(
                email, sender=sender.addr_spec, recipients=recipients, hostname=relay.host,
                port=relay.port, username=relay.username, password=relay.password,
                use_tls=relay.tls == "tls", start_tls=relay.tls == "starttls",
                timeout=relay.timeout)
        except aiosmtplib.SMTPRecipientsRefused as exc:  # every recipient
            codes = [r.code for r in exc.recipients]
            raise DeliveryFailed(
                "the relay refused every recipient: " + "; ".join(
                    f"{r.code} {_reply_text(r.message)}" for r in exc.recipients),
                permanent=all(code >= 500 for code in codes)) from exc
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected,
                aiosmtplib.SMTPTimeoutError) as exc:
            raise DeliveryFailed(f"SMTP relay unreachable: {type(exc).__name__}", permanent=False) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryFailed(f"the relay answered {exc.code} {_reply_text(exc.message)}",
                                 permanent=exc.code >= 500) from exc
        except aiosmtplib.SMTPException as exc:  # e.g. STARTTLS or SMTPUTF8 not supported
            raise DeliveryFailed(f"the relay cannot take it: {_reply_text(exc.message)}",
                                 permanent=True) from exc
        message_id = str(email["Message-ID"])[1:-1]
        metadata = {"refused": ", ".join(sorted(refused))} if refused else {}
        return Sent(message_id, now, sender=sender.addr_spec.lower(), metadata=metadata)


def _reply_text(text: str) -> str:
    return " ".join(text.split())[:300]

"""What a channel's parser makes of one provider message, whatever the channel. Pure."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime

MAX_TEXT_CHARS = 100_000
MAX_ID_CHARS = 998  # RFC 5322's line limit; longer provider ids and subjects are cut, not refused
MAX_NAME_CHARS = 200
_SURROGATE = re.compile("[\ud800-\udfff]")


class MalformedMessage(ValueError):
    """The raw message cannot become an interaction: it is dead-lettered with this reason."""


@dataclass(frozen=True)
class MediaRef:
    """A file the provider keeps for a message: what to fetch it by, never the bytes."""

    kind: str  # image, document, audio, video, sticker
    provider_id: str
    mime_type: str
    caption: str = ""
    filename: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class Attachment:
    """A file that came inside a message (an email attachment, a chat upload): the bytes are
    stored by ingest, up to the attachment limit."""

    filename: str
    content_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class OrderItem:
    sku: str
    name: str
    quantity: int
    unit_price_minor: int


@dataclass(frozen=True)
class Order:
    """A commerce event: an order placed, or a refund (amounts in minor units)."""

    order_id: str
    total_minor: int
    currency: str  # ISO 4217
    items: tuple[OrderItem, ...] = ()
    status: str = ""


# What an inbound message is; only "message" is a person writing.
KINDS = ("message", "auto_reply", "bounce", "complaint", "order", "refund")


@dataclass(frozen=True)
class InboundMessage:
    """Everything an interaction needs but the contact, which resolving ``sender`` gives."""

    channel: str
    message_id: str  # the provider's: with the workspace and channel, it makes the interaction id
    sender_kind: str  # the contacts identity kind: "email", "whatsapp", ...
    sender: str
    sender_name: str
    text: str
    sent_at: datetime | None  # as the sender's side claims it
    recipients: tuple[str, ...] = ()  # identities of sender_kind
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    conversation_id: str = ""  # chat channels: one id for the whole conversation
    subject: str = ""
    media: tuple[MediaRef, ...] = ()
    kind: str = "message"  # one of KINDS
    html: str = ""  # sanitised for display (email); empty when there is none
    quoted_text: str = ""  # email: the quoted earlier message under the new text
    attachments: tuple[Attachment, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)  # small provider facts
    order: Order | None = None  # kinds "order" and "refund"
    # An email address the channel has verified as the sender's (a chat visitor identified by
    # the website): an unknown sender then joins the contact that owns that address.
    verified_email: str = ""


@dataclass(frozen=True)
class DeliveryStatus:
    """A provider's news about a message we sent (sent, delivered, read, failed), or what a
    report about it says (bounced, complained)."""

    channel: str
    message_id: str
    status: str
    at: datetime | None
    error_code: str = ""


@dataclass(frozen=True)
class Reaction:
    """A person's reaction to a message (an emoji): recorded on that message's interaction,
    never an interaction of its own. An empty emoji takes a reaction back."""

    channel: str
    message_id: str  # the provider's id of the message reacted to
    emoji: str
    at: datetime | None


def clean_text(text: str) -> str:
    """Valid Unicode without NULs, which neither protobuf nor the databases take. Raw 8-bit
    UTF-8 in email headers (RFC 6532) comes out of the parser as surrogate escapes, which are
    turned back into their bytes; a lone surrogate from a JSON escape ("\\ud800") becomes U+FFFD."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
    return text.replace("\x00", "")


# --- reading a provider's JSON: every channel's parser takes values the same way ------------

def json_text(value: object) -> str:
    """A JSON value that should be a short string (an id, a name), cleaned and trimmed; ""
    for anything else."""
    return clean_text(value).strip() if isinstance(value, str) else ""


def json_long_text(value: object) -> str:
    """A JSON value that should be a message's text, cleaned and cut to MAX_TEXT_CHARS."""
    return clean_text(value)[:MAX_TEXT_CHARS] if isinstance(value, str) else ""


def compact_json(value: object) -> bytes:
    """One item of a provider's delivery as a raw record's payload. ASCII escapes keep any
    lone surrogate of the input encodable; the worker cleans it."""
    return json.dumps(value, separators=(",", ":")).encode()

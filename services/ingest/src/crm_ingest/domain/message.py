"""What a channel's parser makes of one provider message, whatever the channel. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
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


@dataclass(frozen=True)
class DeliveryStatus:
    """A provider's news about a message we sent (sent, delivered, read, failed)."""

    channel: str
    message_id: str
    status: str
    at: datetime | None
    error_code: str = ""


def clean_text(text: str) -> str:
    """Valid Unicode without NULs, which neither protobuf nor the databases take. Raw 8-bit
    UTF-8 in email headers (RFC 6532) comes out of the parser as surrogate escapes, which are
    turned back into their bytes; a lone surrogate from a JSON escape ("\\ud800") becomes U+FFFD."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
    return text.replace("\x00", "")

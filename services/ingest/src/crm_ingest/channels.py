"""Which parser turns each channel's raw records into what the worker stores: one line per
channel adapter. A channel missing here has its raw records dead-lettered."""

from __future__ import annotations

from collections.abc import Callable

from crm_ingest.domain.chat import parse_chat
from crm_ingest.domain.commerce import parse_commerce
from crm_ingest.domain.email import parse_email
from crm_ingest.domain.message import DeliveryStatus, InboundMessage, Reaction
from crm_ingest.domain.messenger import parse_instagram, parse_messenger
from crm_ingest.domain.telegram import parse_telegram
from crm_ingest.domain.twilio import parse_sms
from crm_ingest.domain.whatsapp import parse_whatsapp

Parsed = InboundMessage | DeliveryStatus | Reaction

# Each parser takes a raw record's payload and raises MalformedMessage, never anything else.
PARSERS: dict[str, Callable[[bytes], Parsed]] = {
    "email": parse_email,
    "whatsapp": parse_whatsapp,
    "messenger": parse_messenger,
    "instagram": parse_instagram,
    "telegram": parse_telegram,
    "sms": parse_sms,
    "commerce": parse_commerce,
    "chat": parse_chat,
}

"""Parsing an inbound email (RFC 5322) into what an interaction needs. Pure; never raises
anything but MalformedEmail, whatever the bytes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from email.utils import parseaddr, parsedate_to_datetime
from html.parser import HTMLParser

from crm_ingest.domain.message import (
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    InboundMessage,
    MalformedMessage,
    clean_text,
)

MAX_RECIPIENTS = 100
MAX_REFERENCES = 50


class MalformedEmail(MalformedMessage):
    """The message cannot become an interaction: it is dead-lettered with this reason."""


def parse_email(raw: bytes) -> InboundMessage:
    if not raw.strip():
        raise MalformedEmail("empty message")
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        return _parse(message, raw)
    except MalformedEmail:
        raise
    except Exception as exc:  # the stdlib parser's failures are many and varied
        raise MalformedEmail(f"unparseable message: {type(exc).__name__}") from exc


def _parse(message: EmailMessage, raw: bytes) -> InboundMessage:
    senders = _addresses(message, "from")
    if not senders:
        raise MalformedEmail("no sender address in From")
    sender = senders[0]
    sender_address = clean_text(sender.addr_spec).lower()
    if "@" not in sender_address or len(sender_address) > 320:
        raise MalformedEmail("the From address is not an email address")
    recipients = tuple(dict.fromkeys(
        clean_text(a.addr_spec).lower() for name in ("to", "cc") for a in _addresses(message, name)
    ))[:MAX_RECIPIENTS]
    message_id = _msg_id(message.get("message-id", ""))
    if not message_id:
        # No Message-ID: the content itself identifies the message, so a replay still matches.
        message_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    references = tuple(r for r in (_msg_id(p) for p in str(message.get("references", "")).split()) if r)
    return InboundMessage(
        channel="email",
        message_id=message_id,
        sender_kind="email",
        sender=sender_address,
        sender_name=clean_text(sender.display_name or "")[:MAX_NAME_CHARS],
        text=clean_text(_text_body(message))[:MAX_TEXT_CHARS],
        sent_at=_date(message.get("date")),
        recipients=recipients,
        in_reply_to=_msg_id(message.get("in-reply-to", "")),
        references=references[-MAX_REFERENCES:],
        subject=clean_text(str(message.get("subject", "")))[:MAX_ID_CHARS],
    )


def _addresses(message: EmailMessage, header: str) -> list[Address]:
    value = message.get(header)
    if value is None:
        return []
    addresses = getattr(value, "addresses", ())
    return [a for a in addresses if isinstance(a, Address) and a.addr_spec]


def _msg_id(value: object) -> str:
    text = clean_text(str(value)).strip()
    text = text[1:-1].strip() if text.startswith("<") and text.endswith(">") else text
    return text[:MAX_ID_CHARS]


def _text_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    return html_to_text(content) if part.get_content_subtype() == "html" else content


class _TextOnly(HTMLParser):
    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "blockquote"})
    _HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self.hidden += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and self.hidden:
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML body: no markup, scripts or styles. (Sanitised HTML for
    display is kept separately by the channel adapters' issue; this is the plain text.)"""
    parser = _TextOnly()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def sender_of(raw: bytes) -> str | None:
    """The From address, for the partition key only: read from the headers alone with the
    legacy parser, about ten times cheaper than policy.default, so that the accepting endpoint
    stays fast. The worker's full parse decides what the sender really is."""
    try:
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
        address = parseaddr(str(headers.get("from", "")))[1].strip().lower()
    except Exception:  # whatever the bytes: the worker decides what is malformed
        return None
    return address if "@" in address else None


def _date(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

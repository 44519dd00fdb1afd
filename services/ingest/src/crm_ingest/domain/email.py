"""Parsing an inbound email (RFC 5322) into what an interaction needs: the sender and
recipients, threading headers, the new text and the quoted one, sanitised HTML, the files and
what kind of mail it is. Pure; never raises anything but MalformedEmail, whatever the bytes."""

from __future__ import annotations

import hashlib
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesHeaderParser, BytesParser
from email.utils import parseaddr

from crm_ingest.domain.email_headers import (
    MAX_MIME_PARTS,
    POLICY,
    addresses,
    date,
    header,
    msg_id,
    too_many_parts,
)
from crm_ingest.domain.email_html import html_text_and_quote, html_to_text, sanitise_html
from crm_ingest.domain.email_parts import attachments
from crm_ingest.domain.email_quotes import split_quote
from crm_ingest.domain.email_reports import classify
from crm_ingest.domain.message import (
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    InboundMessage,
    MalformedMessage,
    clean_text,
)

__all__ = ["MalformedEmail", "html_to_text", "parse_email", "sender_of"]

MAX_RECIPIENTS = 100
MAX_REFERENCES = 50
# Subjects of forwarded messages (English, German, French, Spanish, Portuguese): what they
# carry is what the person sends, not a quote, so their text is not split.
_FORWARDS = ("fwd:", "fw:", "wg:", "tr:", "rv:", "enc:")


class MalformedEmail(MalformedMessage):
    """The message cannot become an interaction: it is dead-lettered with this reason."""


def parse_email(raw: bytes) -> InboundMessage:
    if not raw.strip():
        raise MalformedEmail("empty message")
    if too_many_parts(raw):
        raise MalformedEmail(f"more than {MAX_MIME_PARTS} MIME parts")
    try:
        message = BytesParser(policy=POLICY).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        return _parse(message, raw)
    except MalformedEmail:
        raise
    except Exception as exc:  # the stdlib parser's failures are many and varied
        raise MalformedEmail(f"unparseable message: {type(exc).__name__}") from exc


def _parse(message: EmailMessage, raw: bytes) -> InboundMessage:
    senders = addresses(message, "from")
    if not senders:
        raise MalformedEmail("no sender address in From")
    sender = senders[0]
    sender_address = clean_text(sender.addr_spec).lower()
    if "@" not in sender_address or len(sender_address) > 320:
        raise MalformedEmail("the From address is not an email address")
    recipients = tuple(dict.fromkeys(
        clean_text(a.addr_spec).lower() for name in ("to", "cc") for a in addresses(message, name)
    ))[:MAX_RECIPIENTS]
    message_id = msg_id(header(message, "message-id"))
    if not message_id:
        # No Message-ID: the content itself identifies the message, so a replay still matches.
        message_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    references = tuple(r for r in (msg_id(p) for p in header(message, "references").split()) if r)
    subject = header(message, "subject")[:MAX_ID_CHARS]
    body = _Body(message, forwarded=subject.lower().startswith(_FORWARDS))
    files, dropped = attachments(message, (body.plain_part, body.html_part))
    kind, metadata = classify(message, sender_address, subject, body.whole)
    if dropped:
        metadata.add("attachments_dropped", str(dropped))
    metadata.add("html_omitted", body.html_omitted)
    return InboundMessage(
        channel="email",
        message_id=message_id,
        sender_kind="email",
        sender=sender_address,
        sender_name=clean_text(sender.display_name or "")[:MAX_NAME_CHARS],
        text=body.text,
        sent_at=date(header(message, "date")),
        recipients=recipients,
        in_reply_to=msg_id(header(message, "in-reply-to")),
        references=references[-MAX_REFERENCES:],
        subject=subject,
        kind=kind,
        html=body.html,
        quoted_text=body.quoted,
        attachments=files,
        metadata=dict(metadata),
    )


class _Body:
    """The bodies of a message: the plain text part (or else the visible text of the HTML one)
    split into new and quoted text (unless forwarded), and the HTML part sanitised."""

    def __init__(self, message: EmailMessage, *, forwarded: bool) -> None:
        self.plain_part = message.get_body(preferencelist=("plain",))
        self.html_part = message.get_body(preferencelist=("html",))
        html = _content(self.html_part) if self.html_part is not None else ""
        self.html, self.html_omitted = sanitise_html(html) if html else ("", "")
        if self.plain_part is not None:
            whole = clean_text(_content(self.plain_part)[:2 * MAX_TEXT_CHARS])
            new, quoted = split_quote(whole)
        elif html:
            # The sanitised HTML has the same visible text and quote marks, in simpler markup.
            new, marked = html_text_and_quote(self.html or html)
            new, quoted = split_quote(clean_text(new))
            quoted = "\n".join(q for q in (quoted, clean_text(marked)) if q)
            whole = "\n".join(t for t in (new, quoted) if t)
            if not new.strip():  # nothing but a quote: that is the message
                new, quoted = whole, ""
        else:
            whole = new = quoted = ""
        if forwarded:
            new, quoted = whole, ""
        self.whole = whole
        self.text = new[:MAX_TEXT_CHARS]
        self.quoted = quoted[:MAX_TEXT_CHARS]


def _content(part: MIMEPart) -> str:
    try:
        content = part.get_content()
    except Exception:  # an unknown charset, say: the bytes as UTF-8, as far as they go
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


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

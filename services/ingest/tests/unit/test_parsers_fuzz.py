"""Whatever bytes reach a channel's parser, it returns what the worker stores or raises
MalformedMessage (the record is dead-lettered); any other exception would stop the worker on a
poison record. Every parser in the registry is fed, so a channel added later is covered too."""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Callable, Iterator
from dataclasses import fields, is_dataclass
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_ingest.channels import PARSERS, Parsed
from crm_ingest.domain.email import parse_email
from crm_ingest.domain.email_html import MAX_HTML_CHARS
from crm_ingest.domain.email_parts import MAX_ATTACHMENTS, MAX_FILENAME_BYTES
from crm_ingest.domain.email_reports import MAX_METADATA_CHARS, MAX_METADATA_KEYS
from crm_ingest.domain.message import (
    MAX_TEXT_CHARS,
    DeliveryStatus,
    InboundMessage,
    MalformedMessage,
    Reaction,
)

FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,  # nothing written into the working tree; a failure prints its example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _parse(parser: Callable[[bytes], Parsed], raw: bytes) -> Parsed | None:
    """The parser's answer, None for a refusal; any other exception fails the test."""
    try:
        parsed = parser(raw)
    except MalformedMessage:
        return None
    assert isinstance(parsed, (InboundMessage, DeliveryStatus, Reaction))
    for text in _strings(parsed):  # what protobuf and the databases take
        text.encode("utf-8")
        assert "\x00" not in text
    return parsed


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif is_dataclass(value) and not isinstance(value, type):
        for field in fields(value):
            yield from _strings(getattr(value, field.name))
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)


class _Markup(HTMLParser):
    """Collects what a browser would run or load from HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.handlers: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append(name)
            if name in ("href", "src") and value is not None:
                self.urls.append(f"{tag}:{name}:{value.strip().lower()}")


def _check_email(email: InboundMessage) -> None:
    assert email.kind in ("message", "auto_reply", "bounce")
    assert len(email.text) <= MAX_TEXT_CHARS
    assert len(email.quoted_text) <= MAX_TEXT_CHARS
    assert len(email.html) <= MAX_HTML_CHARS
    assert len(email.attachments) <= MAX_ATTACHMENTS
    for attachment in email.attachments:
        assert 0 < len(attachment.filename.encode()) <= MAX_FILENAME_BYTES
        assert not set(attachment.filename) & {"/", "\\"}
        assert attachment.filename.isprintable()
        assert isinstance(attachment.data, bytes)
    assert len(email.metadata) <= MAX_METADATA_KEYS
    assert all(0 < len(value) <= MAX_METADATA_CHARS for value in email.metadata.values())
    markup = _Markup()
    markup.feed(email.html)
    markup.close()
    assert not markup.handlers
    assert not markup.tags & {"script", "style", "iframe", "object", "embed", "form", "svg", "math"}
    for url in markup.urls:
        if url.startswith("img:src:"):
            assert url.startswith(("img:src:cid:", "img:src:https://"))
        else:
            assert url.startswith(("a:href:http:", "a:href:https:", "a:href:mailto:", "a:href:tel:"))


# --- arbitrary bytes, to every parser -----------------------------------------------------

CHANNELS = sorted(PARSERS)


@pytest.mark.parametrize("channel", CHANNELS)
@FUZZ
@given(raw=st.binary(max_size=2048))
def test_any_bytes_are_parsed_or_refused(channel: str, raw: bytes) -> None:
    _parse(PARSERS[channel], raw)


# --- JSON- and form-shaped payloads, to every parser --------------------------------------

# Names the channels' payloads use (WhatsApp, Messenger, Instagram, Telegram, Twilio, chat,
# commerce), so that the generated objects reach past the first checks.
_KEYS = st.sampled_from([
    "object", "entry", "changes", "field", "value", "messaging_product", "metadata",
    "phone_number_id", "display_phone_number", "contacts", "profile", "name", "wa_id",
    "messages", "statuses", "status", "recipient_id", "errors", "code", "id", "from", "to",
    "timestamp", "time", "type", "text", "body", "caption", "mime_type", "sha256", "filename",
    "image", "document", "audio", "video", "sticker", "button", "interactive", "button_reply",
    "list_reply", "title", "context", "reaction", "emoji", "message_id", "messaging", "message",
    "sender", "recipient", "mid", "mids", "is_echo", "is_deleted", "attachments", "payload",
    "url", "postback", "quick_reply", "reply_to", "read", "delivery", "update_id",
    "edited_message", "message_reaction", "chat", "user", "username", "date", "file_id",
    "file_name", "new_reaction", "old_reaction", "reply_to_message", "event", "event_id",
    "store", "order", "order_id", "items", "sku", "quantity", "unit_price_minor", "total_minor",
    "currency", "customer", "email", "phone", "refund", "refund_id", "occurred_at", "client_id",
    "seq", "unverified_email", "MessageSid", "SmsSid", "From", "To", "Body", "NumMedia",
    "MediaUrl0", "MediaContentType0", "MessageStatus", "SmsStatus", "ErrorCode",
]) | st.text(max_size=12)
_ODD_STRINGS = st.sampled_from([
    "", " ", "\x00", "\ud800", "\udfff", "a\ud83d", "\u202e", "0", "-1", "1e309", "NaN",
    "15551234567", "+15551234567", "1700000000", "99999999999999999999", "whatsapp_business_account",
    "page", "instagram", "messages", "text", "image", "reaction", "order", "refund", "EUR", "xx",
    "received", "delivered", "failed", "read", "sent", "https://example.com/a", "javascript:x",
    "<script>alert(1)</script>", "x" * 5000,
])
_JSON_LEAVES = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40) | _ODD_STRINGS
)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=6),
    max_leaves=40,
)


def _deeply_nested(depth: int) -> bytes:
    return b'{"entry":' * depth + b"[" * depth + b"]" * depth + b"}" * depth


_JSON_PAYLOADS = st.one_of(
    _JSON.map(lambda value: json.dumps(value).encode()),
    _JSON.map(lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.tuples(_JSON.map(lambda value: json.dumps(value).encode()), st.integers(0, 64)).map(
        lambda pair: pair[0][:pair[1]]),  # cut short
    st.integers(1, 50_000).map(_deeply_nested),
    st.dictionaries(_KEYS, _ODD_STRINGS | st.text(max_size=30), max_size=8).map(
        lambda form: urlencode(form, errors="surrogatepass").encode()),
)


@pytest.mark.parametrize("channel", CHANNELS)
@FUZZ
@given(raw=_JSON_PAYLOADS)
def test_malformed_json_and_form_payloads_are_parsed_or_refused(channel: str, raw: bytes) -> None:
    _parse(PARSERS[channel], raw)


# --- email: arbitrary bytes and structured but malformed MIME ------------------------------

@FUZZ
@given(raw=st.binary(max_size=4096))
def test_any_bytes_are_an_email_or_malformed(raw: bytes) -> None:
    email = _parse(parse_email, raw)
    if isinstance(email, InboundMessage):
        _check_email(email)


_TOKEN = st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=20)
_HEADER_NAMES = st.sampled_from([
    "From", "To", "Cc", "Subject", "Message-ID", "In-Reply-To", "References", "Date",
    "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-ID",
    "MIME-Version", "Auto-Submitted", "X-Autoreply", "X-Autorespond", "Precedence", "List-Id",
]) | _TOKEN
_HEADER_VALUES = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=80).map(lambda data: data.decode("latin-1")),
    st.sampled_from([
        "", "<>", "a@", "@", "<a@example.com", '"unterminated <a@example.com>', "(((((", ")))",
        "=?utf-8?b?@@@?=", "=?bogus?q?=ZZ?=", "=?utf-8?q?caf=C3=A9?=", "=?utf-8?b?" + "A" * 50 + "?=",
        "Ada <ada@example.com>, <b@example.com>", "undisclosed-recipients:;", "g: a@b, c@d;",
        "text/plain; charset=bogus", "text/html; charset=utf-16", "multipart/mixed; boundary=",
        "multipart/mixed", 'multipart/report; report-type="delivery-status"; boundary="q"',
        "message/rfc822", "message/delivery-status", "text/rfc822-headers", "image/png",
        "attachment; filename*=utf-8''%FF%FE%2F..%2Fetc", 'attachment; filename="\u202egpj.exe"',
        "inline", "base64", "quoted-printable", "x-uuencode", "8bit", "auto-replied", "auto_reply",
        "Mon, 99 Foo 2026 25:61:61 +9999", "Fri, 01 Jan 10000 00:00:00 +0000", "<list.example.com>",
    ]),
    st.integers(1_000, 20_000).map(lambda n: "x" * n),  # a huge header line
    st.integers(100, 2_000).map(lambda n: "a@example.com, " * n),
)
_BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from([
        b"PGh0bWw+", b"not base64 at all!!", b"QUJD=", b"====", b"=ZZ=\n=", b"=\n", b"caf=E9 =C3=",
        b"begin 644 x\nM86)C\nend\n", b"<p onclick=x>Hi<script>alert(1)</script><img src=x onerror=y>",
        b"<div class=gmail_quote>" * 50, b"<b><i><u>x</b>" * 30, b"<a href='javascript:x'>j</a>",
        b"<img src='data:image/png;base64,AAAA'><img src=\"cid:a\"><img src='https://e.example/a'>",
        b"<blockquote type=cite>On x wrote:<br>old</blockquote>", b"<!--", b"<![CDATA[", b"<!x",
        b"<title>t", b"<style>p{}", b"<p style='width:expression(alert(1))'>x</p>",
        b"Reporting-MTA: dns; x\n\nFinal-Recipient: rfc822; a@b\nAction: failed\nStatus: 5.1.1\n",
        b"Final-Recipient:\nAction\nStatus: \n\n\n", b"Message-ID: <orig@x>\n\nbody",
        b"new\n\nOn Mon, A <a@b> wrote:\n> old\n> older", b"-----Original Message-----\nFrom: x\nSent: y",
        b"> only\n> quoted", b"From: x\nSent: y\n\nold", b"<div>" * 600 + b"<![foo[ x",
    ]),
)
_SUBTYPES = st.sampled_from([
    "mixed", "alternative", "related", "digest", "report; report-type=delivery-status",
    "report; report-type=disposition-notification", "signed",
])
_LEAF_TYPES = st.sampled_from([
    "text/plain", "text/html", "text/plain; charset=bogus", "text/html; charset=utf-16",
    "text/plain; charset=iso-2022-jp", "image/png", "application/pdf", "application/octet-stream",
    "message/rfc822", "message/delivery-status", "text/rfc822-headers", "message/global",
    "text/calendar", "multipart/mixed", "", "text", "/", "text/plain; name=\"../../a.txt\"",
])
_ENCODINGS = st.sampled_from(
    ["", "base64", "quoted-printable", "7bit", "8bit", "binary", "x-uuencode", "bogus"])
_DISPOSITIONS = st.sampled_from([
    "", "inline", "attachment", 'attachment; filename="a.pdf"', "attachment; filename=",
    'attachment; filename="' + "n" * 400 + '.pdf"', "attachment; filename*=utf-8''%E2%80%AEx.exe",
    'inline; filename="C:\\\\evil\\\\x.png"', "attachment; filename*0=a; filename*1=b",
])


def _leaf(content_type: str, encoding: str, disposition: str, extra: list[tuple[str, str]],
          body: bytes, base64_body: bool) -> bytes:
    headers = [("Content-Type", content_type), ("Content-Transfer-Encoding", encoding),
               ("Content-Disposition", disposition), *extra]
    if base64_body:
        body = base64.encodebytes(body)
    return _headers(headers) + b"\n" + body


def _multipart(subtype: str, children: list[bytes], boundary: str, mode: str) -> bytes:
    declared = {"ok": boundary, "missing": "", "mismatched": boundary + "x", "unterminated": boundary,
                "empty": boundary, "quoted": boundary}[mode]
    parameter = f"; boundary={declared}" if declared else ""
    if mode == "quoted":
        parameter = f'; boundary="{declared}"'
    head = _headers([("Content-Type", f"multipart/{subtype}{parameter}")]) + b"\n"
    if mode == "empty":
        return head + b"preamble only\n"
    marker = b"--" + boundary.encode()
    body = b"preamble\n" + b"".join(marker + b"\n" + child + b"\n" for child in children)
    return head + body + (b"" if mode == "unterminated" else marker + b"--\nepilogue\n")


def _headers(headers: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{name}: {value}\n".encode("utf-8", "surrogatepass") for name, value in headers if value)


_EXTRA_HEADERS = st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=3)
_PARTS = st.recursive(
    st.builds(_leaf, _LEAF_TYPES, _ENCODINGS, _DISPOSITIONS, _EXTRA_HEADERS, _BODIES, st.booleans()),
    lambda inner: st.builds(
        _multipart, _SUBTYPES, st.lists(inner, max_size=4), _TOKEN,
        st.sampled_from(["ok", "ok", "ok", "missing", "mismatched", "unterminated", "empty", "quoted"]),
    ),
    max_leaves=8,
)
_SENDERS = st.sampled_from([
    "Ada <ada@example.com>", "MAILER-DAEMON@mx.example.com", "postmaster@example.com",
    "a@b", "", "<>", "not an address", "=?utf-8?q?Ad=C3=A1?= <ada@example.com>",
])
_SUBJECTS = st.sampled_from(["", "Re: order", "Undelivered Mail Returned to Sender", "Automatic reply: x"])


@st.composite
def _emails(draw: st.DrawFn) -> bytes:
    top = [("From", draw(_SENDERS)), ("Subject", draw(_SUBJECTS)), *draw(st.lists(
        st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=8))]
    top = draw(st.permutations(top))
    raw = _headers(top) + draw(_PARTS)
    if draw(st.booleans()):
        raw = raw.replace(b"\n", b"\r\n")
    return raw


@FUZZ
@given(raw=_emails())
def test_malformed_mime_is_an_email_or_malformed(raw: bytes) -> None:
    email = _parse(parse_email, raw)
    if isinstance(email, InboundMessage):
        _check_email(email)

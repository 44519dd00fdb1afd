"""SMS over Twilio's Messaging webhooks: the ``X-Twilio-Signature``, and parsing one request
(an incoming message, or a status callback about a message we sent). Pure; parsing never
raises anything but NotTwilio (the endpoint's 422) or MalformedSms (the worker's dead letter).

Twilio posts form-encoded parameters (``application/x-www-form-urlencoded``) and signs them:
the base64 HMAC-SHA1, keyed with the account's auth token, of the full URL it called followed
by every POST parameter, sorted by name, as name and value concatenated. The URL is the one
configured at Twilio, not the one a proxy in front of ingest passes on."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from crm_ingest.domain.message import (
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
    DeliveryStatus,
    InboundMessage,
    MalformedMessage,
    MediaRef,
    clean_text,
    json_text,
)

CHANNEL = "sms"
# A phone number as Twilio writes it, and as contacts keeps a phone identity.
E164 = r"^\+[1-9]\d{6,14}$"
_E164 = re.compile(E164)
_STATUS = re.compile(r"^[a-z_]{1,32}$")
# The statuses of a message that came in; every other one is news about a message we sent.
_INBOUND_STATUSES = frozenset({"received", "receiving"})
_MAX_FIELDS = 1000  # Twilio sends a few dozen
_MAX_MEDIA = 10  # an MMS has at most 10 files
_DEFAULT_PORTS = {"https": 443, "http": 80}

Params = list[tuple[str, str]]


class NotTwilio(ValueError):
    """The body is not a Twilio Messaging request (the endpoint answers 422)."""


class MalformedSms(MalformedMessage):
    """The record cannot become an interaction or a status: it is dead-lettered with this reason."""


def parse_form(body: bytes) -> Params:
    """The parameters of a form-encoded body, in their order; NotTwilio for one that is not
    UTF-8 form data."""
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict",
                         max_num_fields=_MAX_FIELDS)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError, and so is too many fields
        raise NotTwilio("the body is not UTF-8 form data") from exc


def sign(auth_token: bytes, url: str, params: Params) -> str:
    """The ``X-Twilio-Signature`` Twilio sends when it posts ``params`` to ``url``. A name
    given more than once has its distinct values sorted, as Twilio's own libraries do."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    return base64.b64encode(hmac.new(auth_token, signed.encode(), hashlib.sha1).digest()).decode()


def signature_valid(auth_token: bytes, url: str, params: Params, header: str | None) -> bool:
    """Whether ``header`` signs ``params`` posted to ``url`` (or to the same URL with its
    default port written out or left out: Twilio signs either), compared in constant time."""
    if not header:
        return False
    given = header.strip().encode()
    valid = False
    for candidate in _url_forms(url):
        valid |= hmac.compare_digest(sign(auth_token, candidate, params).encode(), given)
    return valid


def _url_forms(url: str) -> list[str]:
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return [url]
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    if default is None or (port is not None and port != default):
        return [url]
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    bare = urlunsplit(parts._replace(netloc=f"{prefix}{host}"))
    return [url, bare, urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}"))]


# --- the endpoint: which number a request is for ---------------------------------------------

@dataclass(frozen=True)
class SmsItem:
    kind: Literal["message", "status"]
    number: str  # our Twilio number (a message's To, a status's From): says which workspace
    person: str  # the other side, for the partition key


def classify(params: Params) -> SmsItem:
    """An incoming message or a status callback; NotTwilio for a request with no message."""
    form = _first(params)
    if not (form.get("MessageSid") or form.get("SmsSid")):
        raise NotTwilio("no MessageSid: not a Twilio Messaging request")
    if _status_of(form):
        return SmsItem("status", form.get("From", "")[:64], form.get("To", "")[:64])
    return SmsItem("message", form.get("To", "")[:64], form.get("From", "")[:64])


# --- the worker: one request (its form body) -> a message or a delivery status ---------------

def parse_sms(raw: bytes) -> InboundMessage | DeliveryStatus:
    try:
        form = _first(parse_form(raw))
    except NotTwilio as exc:
        raise MalformedSms(str(exc)) from exc
    sid = json_text(form.get("MessageSid") or form.get("SmsSid"))[:MAX_ID_CHARS]
    if not sid:
        raise MalformedSms("no MessageSid")
    status = _status_of(form)
    if status:
        if not _STATUS.match(status):
            raise MalformedSms("a status callback without a known status name")
        return DeliveryStatus(CHANNEL, sid, status, None, json_text(form.get("ErrorCode"))[:32])
    sender, number = json_text(form.get("From")), json_text(form.get("To"))
    if not _E164.match(sender):
        raise MalformedSms("the sender (From) is not a phone number in E.164")
    text = clean_text(form.get("Body", ""))[:MAX_TEXT_CHARS]
    media = _media(form)
    if not text.strip() and not media:
        raise MalformedSms("an SMS with neither text nor media")
    return InboundMessage(
        channel=CHANNEL,
        message_id=sid,
        sender_kind="phone",  # so that an SMS joins the person's other phone identities
        sender=sender,
        sender_name="",
        text=text,
        sent_at=None,  # Twilio gives no time: the time it reached us is the one
        recipients=(number,) if _E164.match(number) else (),
        # One conversation per number of ours and person: a reply goes from that number.
        conversation_id=f"{number}:{sender}",
        media=media,
    )


def _media(form: dict[str, str]) -> tuple[MediaRef, ...]:
    count = form.get("NumMedia", "0")
    found: list[MediaRef] = []
    for index in range(min(int(count), _MAX_MEDIA) if count.isascii() and count.isdigit() else 0):
        url = json_text(form.get(f"MediaUrl{index}"))
        if not url:
            continue
        mime_type = json_text(form.get(f"MediaContentType{index}"))[:255]
        kind = mime_type.partition("/")[0]
        found.append(MediaRef(kind=kind if kind in ("image", "video", "audio") else "document",
                              provider_id=url[:4096], mime_type=mime_type))
    return tuple(found)


def _status_of(form: dict[str, str]) -> str:
    """The status a status callback reports; empty for an incoming message."""
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    return "" if status in _INBOUND_STATUSES else status


def _first(params: Params) -> dict[str, str]:
    form: dict[str, str] = {}
    for name, value in params:
        form.setdefault(name, value)
    return form


"""Web chat: visitor tokens, identity verification, the frames a widget and the server
exchange, the raw record a visitor's message becomes, and parsing that record for the worker.
Pure (no I/O)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import jwt

from crm_ingest.domain.message import (
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    InboundMessage,
    MalformedMessage,
    clean_text,
)

CHANNEL = "chat"
SENDER_KIND = "chat_visitor"
SOURCE = "web-chat"
CONTENT_TYPE = "application/json"
# A website's public widget key: in its page, so not a secret; "sessions" names the agents' API.
WIDGET_KEY = r"^[A-Za-z0-9_-]{8,64}$"
RESERVED_WIDGET_KEYS = frozenset({"sessions"})
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$")
_MAX_EMAIL_CHARS = 320  # what contacts takes as an email identity
_SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}$")
_ISSUER = "crm-ingest/chat"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

Direction = Literal["inbound", "outbound"]
Frame = dict[str, Any]


class InvalidVisitorToken(ValueError):
    """The visitor token is missing, malformed, expired, or for another widget."""


class FrameError(ValueError):
    """A visitor's frame or message the server refuses; ``code`` goes into the error frame."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class TooLarge(FrameError):
    def __init__(self, limit: int) -> None:
        super().__init__("too_large", f"a message's text is at most {limit} bytes")


# --- visitors and their tokens ---------------------------------------------------------------

@dataclass(frozen=True)
class Visitor:
    """Who a visitor token speaks for: one visitor of one widget, in one chat session."""

    workspace_id: str
    widget: str
    visitor_id: str
    session_id: str


def issue_visitor_token(secret: str, visitor: Visitor, now: datetime, ttl: timedelta) -> tuple[str, datetime]:
    """An HS256 JWT signed with the chat secret (never the staff JWT secret, so that a visitor
    token is never a staff credential and the other way round); its audience names the widget."""
    expires_at = (now + ttl).replace(microsecond=0)
    claims = {"iss": _ISSUER, "aud": _audience(visitor.widget), "sub": visitor.visitor_id,
              "sid": visitor.session_id, "ws": visitor.workspace_id,
              "iat": int(now.timestamp()), "exp": int(expires_at.timestamp())}
    return jwt.encode(claims, secret, algorithm="HS256"), expires_at


def read_visitor_token(secret: str, token: str, widget: str) -> Visitor:
    """The visitor a token of ``widget`` speaks for; InvalidVisitorToken for anything else."""
    if not token or len(token) > 2048:
        raise InvalidVisitorToken("no visitor token")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], audience=_audience(widget),
                            issuer=_ISSUER, options={"require": ["exp", "iat", "sub", "sid", "ws"]})
    except jwt.PyJWTError as exc:
        raise InvalidVisitorToken("invalid or expired visitor token") from exc
    values = [claims.get(name) for name in ("ws", "sub", "sid")]
    if not all(isinstance(v, str) and 0 < len(v) <= 128 for v in values):
        raise InvalidVisitorToken("invalid visitor token")
    workspace_id, visitor_id, session_id = (str(v) for v in values)
    return Visitor(workspace_id, widget, visitor_id, session_id)


def _audience(widget: str) -> str:
    return f"chat:{widget}"


def visitor_name(value: object) -> str:
    """The name a visitor gives, trimmed; never an identity."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FrameError("invalid", "name must be a string")
    return " ".join(clean_text(value).split())[:MAX_NAME_CHARS]


def visitor_email(value: object) -> str:
    """The email address a visitor gives. Unless the website signed it (verified_visitor_email),
    it is only a hint for the agents, never used to link the visitor to a contact."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value.strip()) > _MAX_EMAIL_CHARS or not _EMAIL.match(value.strip()):
        raise FrameError("invalid", "email is not an email address")
    return clean_text(value.strip())


# --- identity verification -------------------------------------------------------------------

class InvalidIdentitySignature(ValueError):
    """An email signature that does not prove the email; ``reason`` is for the metric."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def signed_email(email: str) -> str:
    """The form of an email address that is signed, and stored once verified: trimmed and
    lower-cased."""
    return email.strip().lower()


def sign_visitor_email(secret: str, email: str) -> str:
    """What the website's backend computes for a logged-in person (and sends to its pages with
    the email): the lower-case hex HMAC-SHA256 of the trimmed, lower-cased email (UTF-8), keyed
    with the widget's identity secret (UTF-8)."""
    return hmac.new(secret.encode(), signed_email(email).encode(), hashlib.sha256).hexdigest()


def verified_visitor_email(secret: str, email: str, signature: str) -> str:
    """The email, as signed_email spells it, when ``signature`` is sign_visitor_email's for it
    with ``secret`` (hex of either case; compared in constant time). InvalidIdentitySignature
    otherwise, and always for a widget without an identity secret."""
    if not secret:
        raise InvalidIdentitySignature("no_secret", "this widget does not verify identities")
    if not email:
        raise InvalidIdentitySignature("no_email", "email_signature comes with the email it signs")
    verified = signed_email(email)
    if len(verified) > _MAX_EMAIL_CHARS or not _EMAIL.match(verified):
        raise InvalidIdentitySignature("bad_email", "the signed email is not an email address")
    expected = sign_visitor_email(secret, verified)
    if not _SIGNATURE.match(signature) or not hmac.compare_digest(expected, signature.lower()):
        raise InvalidIdentitySignature("mismatch", "email_signature is not the signature of this "
                                                   "email with the widget's identity secret")
    return verified


# --- origins ---------------------------------------------------------------------------------

def normalise_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case, without a default port; None when it is not
    an http(s) origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host or parts.path not in ("", "/") or parts.query \
            or parts.username or parts.password:
        return None
    default = 80 if scheme == "http" else 443
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}" + (f":{port}" if port is not None and port != default else "")


def origin_allowed(origin: str | None, allowed: frozenset[str], *, allow_loopback: bool) -> bool:
    """Whether a page of ``origin`` may use a widget allowing ``allowed`` (normalised origins).
    No Origin at all is a client that is not a browser, which could claim any origin: the
    visitor token is what protects a session, this check keeps other sites' pages out."""
    if origin is None:
        return True
    found = normalise_origin(origin)
    if found is None:
        return False
    if found in allowed:
        return True
    return allow_loopback and (urlsplit(found).hostname or "") in _LOOPBACK_HOSTS


# --- the transcript --------------------------------------------------------------------------

@dataclass(frozen=True)
class ChatMessage:
    """One message of a session's transcript. ``seq`` counts from 1 per session, without gaps,
    in the order the messages were stored."""

    session_id: str
    seq: int
    direction: Direction
    text: str
    at: datetime
    client_id: str = ""  # the visitor's id for a message they sent (a retry sends the same)
    outbound_id: str = ""  # the OutboundMessage an agent's reply came as


@dataclass(frozen=True)
class ChatSession:
    id: str
    workspace_id: str
    widget: str
    visitor_id: str
    name: str
    email: str  # as the visitor (or the website) gave it
    created_at: datetime
    # The email the website signed for the person (signed_email's form): the visitor joins the
    # contact that owns it. Empty for an anonymous visitor.
    verified_email: str = ""


# A typing notice shows for this long, unless another one or a message comes.
TYPING_FOR = timedelta(seconds=6)


@dataclass(frozen=True)
class SessionState:
    """What changes on a session besides its messages: the readers poll it."""

    last_seq: int
    visitor_read_seq: int
    agent_read_seq: int
    visitor_typing_at: datetime | None
    agent_typing_at: datetime | None


def still_typing(at: datetime | None, now: datetime) -> bool:
    return at is not None and now - at < TYPING_FOR


def provider_message_id(session_id: str, seq: int) -> str:
    """A chat message's id as interactions know it, in both directions."""
    return f"{session_id}:{seq}"


# --- frames ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SendMessage:
    client_id: str
    text: str


@dataclass(frozen=True)
class Typing:
    pass


@dataclass(frozen=True)
class Read:
    seq: int


ClientFrame = SendMessage | Typing | Read


def frame_limit(max_text_bytes: int) -> int:
    """The largest frame worth parsing: the text JSON-escaped at worst, and the rest."""
    return 6 * max_text_bytes + 1024


def parse_frame(raw: str | bytes, max_text_bytes: int) -> ClientFrame:
    """One frame from a visitor's socket. TooLarge (the socket closes with 1009) or FrameError."""
    if len(raw) > frame_limit(max_text_bytes):
        raise TooLarge(max_text_bytes)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise FrameError("invalid", "a frame is one JSON object") from exc
    if not isinstance(data, dict):
        raise FrameError("invalid", "a frame is one JSON object")
    kind = data.get("type")
    if kind == "message":
        return outgoing_message(data.get("client_id"), data.get("text"), max_text_bytes)
    if kind == "typing":
        return Typing()
    if kind == "read":
        return Read(read_seq(data.get("seq")))
    raise FrameError("invalid", "type is one of message, typing, read")


def outgoing_message(client_id: object, text: object, max_text_bytes: int) -> SendMessage:
    """A visitor's message as the socket and the REST fallback take it."""
    if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
        raise FrameError("invalid", "client_id is 1 to 64 letters, digits or _.:-")
    if not isinstance(text, str):
        raise FrameError("invalid", "text must be a string")
    if len(text.encode("utf-8", "surrogatepass")) > max_text_bytes:
        raise TooLarge(max_text_bytes)
    cleaned = clean_text(text).strip()
    if not cleaned:
        raise FrameError("invalid", "text is empty")
    return SendMessage(client_id, cleaned)


def read_seq(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise FrameError("invalid", "seq must be a non-negative integer")
    return value


def message_frame(message: ChatMessage) -> Frame:
    frame: Frame = {"type": "message", "seq": message.seq, "direction": message.direction,
                    "text": message.text, "at": _iso(message.at)}
    if message.client_id:
        frame["client_id"] = message.client_id
    return frame


def ack_frame(message: ChatMessage) -> Frame:
    return {"type": "ack", "client_id": message.client_id, "seq": message.seq}


def typing_frame(by: Literal["agent", "visitor"]) -> Frame:
    return {"type": "typing", "from": by}


def read_frame(by: Literal["agent", "visitor"], seq: int) -> Frame:
    return {"type": "read", "from": by, "seq": seq}


def error_frame(code: str, detail: str, **extra: Any) -> Frame:
    return {"type": "error", "code": code, "detail": detail, **extra}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- the raw record and its parser -----------------------------------------------------------

def raw_payload(session: ChatSession, message: ChatMessage) -> bytes:
    """The raw record of a visitor's message: what the worker needs to make the interaction."""
    record = {"session_id": session.id, "visitor_id": session.visitor_id, "widget": session.widget,
              "seq": message.seq, "client_id": message.client_id, "text": message.text,
              "at": _iso(message.at), "name": session.name, "email": session.email,
              "verified_email": session.verified_email}
    return json.dumps(record, separators=(",", ":")).encode()


class MalformedChat(MalformedMessage):
    """The record cannot become an interaction: it is dead-lettered with this reason."""


def parse_chat(raw: bytes) -> InboundMessage:
    """A visitor's message, as raw_payload wrote it. The visitor id is the sender (a
    chat_visitor identity); a name they gave, or else the email they gave, is the sender's
    display name. An unverified email is only a hint for the agents; a verified one (the
    website signed it) becomes ``verified_email``, which makes a new visitor join the contact
    that owns that email."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedChat("not JSON") from exc
    if not isinstance(data, dict):
        raise MalformedChat("not a chat message record")
    session_id, visitor_id = _short(data, "session_id"), _short(data, "visitor_id")
    seq = data.get("seq")
    if not session_id or not visitor_id or not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise MalformedChat("a chat message without its session, visitor or seq")
    text = data.get("text")
    if not isinstance(text, str):
        raise MalformedChat("a chat message without text")
    name = _string(data.get("name"))[:MAX_NAME_CHARS]
    email = _string(data.get("email"))[:_MAX_EMAIL_CHARS]
    verified = signed_email(_string(data.get("verified_email")))
    if len(verified) > _MAX_EMAIL_CHARS or not _EMAIL.match(verified):
        verified = ""  # none, or not one contacts would take: the message stays, unlinked
    metadata = {"widget": _short(data, "widget")}
    if verified:
        metadata["verified_email"] = verified
    elif email:
        metadata["unverified_email"] = email
    return InboundMessage(
        channel=CHANNEL,
        message_id=provider_message_id(session_id, seq),
        sender_kind=SENDER_KIND,
        sender=visitor_id,
        sender_name=name or email,
        text=clean_text(text)[:MAX_TEXT_CHARS],
        sent_at=_timestamp(data.get("at")),
        conversation_id=session_id,
        metadata={k: v for k, v in metadata.items() if v},
        verified_email=verified,
    )


def _string(value: object) -> str:
    return clean_text(value).strip() if isinstance(value, str) else ""


def _short(data: dict[str, Any], key: str) -> str:
    value = _string(data.get(key))
    return value if len(value) <= 128 else ""


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at.astimezone(UTC) if at.tzinfo else None

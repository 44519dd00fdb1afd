"""Web chat, pure parts: visitor tokens, identity verification, frames, origins, the raw
record's parser, the hub, which session a token resumes, and the checks ChatDelivery makes
before it writes anything."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from crm_ingest.channels import PARSERS
from crm_ingest.chat.config import ChatConfig, ChatLimits, ChatWidget
from crm_ingest.chat.hub import ChatHub
from crm_ingest.chat.service import ChatService
from crm_ingest.domain.chat import (
    ChatMessage,
    ChatSession,
    FrameError,
    InvalidIdentitySignature,
    InvalidVisitorToken,
    MalformedChat,
    Read,
    SendMessage,
    TooLarge,
    Typing,
    Visitor,
    issue_visitor_token,
    message_frame,
    normalise_origin,
    origin_allowed,
    parse_chat,
    parse_frame,
    raw_payload,
    read_visitor_token,
    sign_visitor_email,
    verified_visitor_email,
)
from crm_ingest.domain.message import MalformedMessage
from crm_ingest.outbound.base import DeliveryFailed, OutboundRequest
from crm_ingest.outbound.chat import ChatDelivery
from crm_ingest.service import IngestService
from crm_ingest.settings import Settings
from crm_ingest.store.chat import ChatStore
from crmkit.auth import issue_token

SECRET = "a-chat-secret-of-the-unit-tests-0123456789"
VISITOR = Visitor("ws-1", "acme-widget", "visitor-1", "session-1")
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


# --- tokens ---

def test_a_visitor_token_names_its_visitor_session_and_workspace() -> None:
    token, expires_at = issue_visitor_token(SECRET, VISITOR, datetime.now(UTC), timedelta(hours=1))
    assert read_visitor_token(SECRET, token, "acme-widget") == VISITOR
    assert expires_at > datetime.now(UTC)


@pytest.mark.parametrize("case", ["other widget", "expired", "other secret", "tampered", "staff token",
                                  "empty"])
def test_a_visitor_token_is_refused_unless_it_is_ours_for_this_widget_and_alive(case: str) -> None:
    token, _ = issue_visitor_token(SECRET, VISITOR, datetime.now(UTC), timedelta(hours=1))
    widget = "acme-widget"
    if case == "other widget":
        widget = "other-widget"
    elif case == "expired":
        token, _ = issue_visitor_token(SECRET, VISITOR, datetime.now(UTC) - timedelta(hours=2),
                                       timedelta(hours=1))
    elif case == "other secret":
        token, _ = issue_visitor_token(SECRET + "x", VISITOR, datetime.now(UTC), timedelta(hours=1))
    elif case == "tampered":
        header, payload, signature = token.split(".")
        claims = json.loads(jwt.utils.base64url_decode(payload))
        claims["ws"] = "another-workspace"
        forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
        token = ".".join([header, forged, signature])
    elif case == "staff token":  # even one signed with the same key is not a visitor token
        token = issue_token(SECRET, subject="agent", workspace_id="ws-1", roles=["admin"])
    else:
        token = ""
    with pytest.raises(InvalidVisitorToken):
        read_visitor_token(SECRET, token, widget)


# --- identity verification ---

IDENTITY_SECRET = "the-sites-identity-secret-0123456789abcdef"


def test_the_signature_is_the_hex_hmac_sha256_of_the_trimmed_lower_cased_email() -> None:
    expected = hmac.new(IDENTITY_SECRET.encode(), b"ada@example.com", hashlib.sha256).hexdigest()
    assert sign_visitor_email(IDENTITY_SECRET, "  Ada@Example.COM \n") == expected
    assert verified_visitor_email(IDENTITY_SECRET, "Ada@Example.com", expected) == "ada@example.com"
    assert verified_visitor_email(IDENTITY_SECRET, "ada@example.com", expected.upper()) == "ada@example.com"


@pytest.mark.parametrize(("secret", "email", "signature", "reason"), [
    (IDENTITY_SECRET, "eve@example.com", sign_visitor_email(IDENTITY_SECRET, "ada@example.com"), "mismatch"),
    (IDENTITY_SECRET, "ada@example.com", sign_visitor_email(IDENTITY_SECRET + "x", "ada@example.com"),
     "mismatch"),
    (IDENTITY_SECRET, "ada@example.com", sign_visitor_email(IDENTITY_SECRET, "ada@example.com")[:-1],
     "mismatch"),
    (IDENTITY_SECRET, "ada@example.com", "zz" * 32, "mismatch"),
    (IDENTITY_SECRET, "ada@example.com", "é" * 64, "mismatch"),
    (IDENTITY_SECRET, "", sign_visitor_email(IDENTITY_SECRET, ""), "no_email"),
    ("", "ada@example.com", sign_visitor_email("", "ada@example.com"), "no_secret"),
])
def test_a_signature_that_does_not_prove_the_email_is_refused(secret: str, email: str, signature: str,
                                                              reason: str) -> None:
    with pytest.raises(InvalidIdentitySignature) as refused:
        verified_visitor_email(secret, email, signature)
    assert refused.value.reason == reason


# --- frames ---

def test_a_visitor_sends_messages_typing_and_read_frames() -> None:
    message = '{"type":"message","client_id":"c-1","text":"  Hello  "}'
    assert parse_frame(message, 100) == SendMessage("c-1", "Hello")
    assert parse_frame(b'{"type":"typing"}', 100) == Typing()
    assert parse_frame('{"type":"read","seq":7}', 100) == Read(7)


@pytest.mark.parametrize("frame", [
    "not json", "[1]", '{"type":"shout"}', '{"type":"message","text":"hi"}',
    '{"type":"message","client_id":"a b","text":"hi"}', '{"type":"message","client_id":"c","text":"   "}',
    '{"type":"message","client_id":"c","text":5}', '{"type":"read","seq":-1}', '{"type":"read","seq":true}',
])
def test_a_malformed_frame_is_an_error_not_a_crash(frame: str) -> None:
    with pytest.raises(FrameError) as error:
        parse_frame(frame, 100)
    assert error.value.code == "invalid"


def test_a_message_over_the_limit_is_too_large_counted_in_utf8_bytes() -> None:
    assert parse_frame(json.dumps({"type": "message", "client_id": "c", "text": "é" * 50}), 100)
    with pytest.raises(TooLarge):
        parse_frame(json.dumps({"type": "message", "client_id": "c", "text": "é" * 51}), 100)
    with pytest.raises(TooLarge):  # a frame too large to be worth parsing at all
        parse_frame("x" * 10_000, 100)


def test_a_message_frame_carries_seq_direction_time_and_the_client_id() -> None:
    message = ChatMessage("s", 3, "inbound", "Hi", NOW, client_id="c-1")
    assert message_frame(message) == {"type": "message", "seq": 3, "direction": "inbound", "text": "Hi",
                                      "at": "2025-03-01T12:00:00Z", "client_id": "c-1"}
    assert "client_id" not in message_frame(ChatMessage("s", 4, "outbound", "Hello", NOW))


# --- origins ---

def test_origins_are_compared_normalised() -> None:
    assert normalise_origin("HTTPS://Shop.Example:443") == "https://shop.example"
    assert normalise_origin("http://shop.example:8080/") == "http://shop.example:8080"
    assert normalise_origin("https://shop.example/path") is None
    assert normalise_origin("null") is None
    assert normalise_origin("javascript:alert(1)") is None


def test_only_the_widgets_sites_and_loopback_outside_production_may_embed_it() -> None:
    allowed = frozenset({"https://shop.example"})
    assert origin_allowed("https://shop.example", allowed, allow_loopback=False)
    assert not origin_allowed("https://evil.example", allowed, allow_loopback=True)
    assert not origin_allowed("http://shop.example", allowed, allow_loopback=False)
    assert origin_allowed("http://127.0.0.1:5173", allowed, allow_loopback=True)
    assert origin_allowed("http://localhost:3000", allowed, allow_loopback=True)
    assert not origin_allowed("http://127.0.0.1:5173", allowed, allow_loopback=False)
    assert origin_allowed(None, allowed, allow_loopback=False)  # not a browser


# --- the raw record ---

def session(name: str = "Ada", email: str = "ada@example.com", verified_email: str = "") -> ChatSession:
    return ChatSession("session-1", "ws-1", "acme-widget", "visitor-1", name, email, NOW, verified_email)


def test_a_visitors_message_becomes_an_inbound_chat_message_from_the_visitor() -> None:
    raw = raw_payload(session(), ChatMessage("session-1", 4, "inbound", "Where is my order?", NOW, "c-9"))
    message = parse_chat(raw)
    assert PARSERS["chat"] is parse_chat
    assert (message.channel, message.sender_kind, message.sender) == ("chat", "chat_visitor", "visitor-1")
    assert message.message_id == "session-1:4"
    assert message.conversation_id == "session-1"
    assert message.text == "Where is my order?"
    assert message.sender_name == "Ada"
    assert message.sent_at == NOW
    # The email the visitor typed is a hint for agents, never an identity.
    assert message.metadata == {"widget": "acme-widget", "unverified_email": "ada@example.com"}
    assert message.verified_email == ""


def test_a_verified_email_goes_with_every_message_of_the_session_for_contacts_to_link() -> None:
    verified = session(email="Ada@Example.com", verified_email="ada@example.com")
    raw = raw_payload(verified, ChatMessage("session-1", 2, "inbound", "My invoice?", NOW, "c-2"))
    assert json.loads(raw)["verified_email"] == "ada@example.com"
    message = parse_chat(raw)
    assert (message.sender_kind, message.sender) == ("chat_visitor", "visitor-1")
    assert message.verified_email == "ada@example.com"
    assert message.metadata == {"widget": "acme-widget", "verified_email": "ada@example.com"}


def test_a_verified_email_contacts_would_refuse_is_dropped_not_the_message() -> None:
    record = json.loads(raw_payload(session(), ChatMessage("session-1", 1, "inbound", "Hi", NOW, "c")))
    message = parse_chat(json.dumps({**record, "verified_email": "not an email"}).encode())
    assert message.verified_email == ""
    assert message.text == "Hi"


def test_without_a_name_the_typed_email_is_only_the_display_name() -> None:
    raw = raw_payload(session(name=""), ChatMessage("session-1", 1, "inbound", "Hi", NOW, "c"))
    assert parse_chat(raw).sender_name == "ada@example.com"
    assert parse_chat(raw).sender == "visitor-1"


@pytest.mark.parametrize("record", [b"not json", b"[]", b'{"session_id":"s","visitor_id":"v","text":"x"}',
                                    b'{"session_id":"s","visitor_id":"v","seq":1}',
                                    b'{"session_id":"","visitor_id":"v","seq":1,"text":"x"}'])
def test_a_malformed_chat_record_is_a_malformed_message(record: bytes) -> None:
    with pytest.raises(MalformedChat):
        parse_chat(record)
    assert issubclass(MalformedChat, MalformedMessage)


# --- settings ---

WIDGETS = {"acme-widget": {"workspace_id": "ws-1", "allowed_origins": ["https://Shop.Example/"]}}


def test_a_widgets_origins_are_kept_normalised() -> None:
    settings = Settings(chat_widgets=WIDGETS, chat_secret=SECRET)
    assert settings.chat.widgets["acme-widget"].allowed_origins == ["https://shop.example"]


def test_a_widgets_identity_secret_is_kept_secret() -> None:
    widgets = {"acme-widget": {**WIDGETS["acme-widget"], "identity_secret": IDENTITY_SECRET}}
    widget = Settings(chat_widgets=widgets, chat_secret=SECRET).chat.widgets["acme-widget"]
    assert widget.identity_key() == IDENTITY_SECRET
    assert IDENTITY_SECRET not in repr(widget)
    assert Settings(chat_widgets=WIDGETS, chat_secret=SECRET).chat.widgets["acme-widget"].identity_key() == ""


@pytest.mark.parametrize(("wrong", "reason"), [
    ({"chat_widgets": WIDGETS}, "needs INGEST_CHAT_SECRET"),
    ({"chat_widgets": {"acme-widget": {"workspace_id": "w", "identity_secret": "secret"}},
      "chat_secret": SECRET}, "identity_secret must be"),
    ({"chat_widgets": WIDGETS, "chat_secret": "short"}, "INGEST_CHAT_SECRET must be"),
    ({"chat_widgets": {"acme-widget": {"workspace_id": "w", "allowed_origins": ["shop"]}},
      "chat_secret": SECRET}, "is not an origin"),
    ({"chat_widgets": {"sessions": {"workspace_id": "w"}}, "chat_secret": SECRET}, "may not be one of"),
])
def test_chat_settings_stop_the_service_when_wrong(wrong: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Settings(**wrong)


# --- the hub ---

async def test_the_hub_rings_every_reader_of_a_session_and_no_other() -> None:
    hub = ChatHub()
    with hub.subscribe("s1") as first, hub.subscribe("s1") as second, hub.subscribe("s2") as other:
        hub.stored("s1")
        hub.publish("s1", {"type": "typing", "from": "agent"})
        assert await first.wait(0.1)
        assert first.take() == (True, [{"type": "typing", "from": "agent"}])
        assert second.take()[0] is True
        assert not await other.wait(0.01)
        assert first.take() == (False, [])
    assert hub.readers("s1") == 0


async def test_a_reader_waits_until_rung() -> None:
    hub = ChatHub()
    with hub.subscribe("s1") as reader:
        waiting = asyncio.create_task(reader.wait(5))
        await asyncio.sleep(0)
        hub.stored("s1")
        assert await waiting


# --- which session a token resumes ---

class _Sessions:
    """The session calls of ChatStore, in memory."""

    def __init__(self) -> None:
        self.sessions: dict[str, ChatSession] = {}

    async def create_session(self, found: ChatSession) -> None:
        self.sessions[found.id] = found

    async def session(self, workspace_id: str, session_id: str) -> ChatSession | None:
        found = self.sessions.get(session_id)
        return found if found and found.workspace_id == workspace_id else None

    async def update_visitor(self, workspace_id: str, session_id: str, name: str, email: str) -> None:
        pass


def chat_service() -> ChatService:
    widget = ChatWidget(workspace_id="ws-1", identity_secret=IDENTITY_SECRET)
    config = ChatConfig(widgets={"acme-widget": widget}, secret=SECRET, token_ttl_seconds=3600,
                        max_message_bytes=4096, poll_seconds=1.0, limits=ChatLimits(10, 10, 10),
                        allow_loopback_origins=False)
    store: ChatStore = _Sessions()  # type: ignore[assignment]
    ingest: IngestService = object()  # type: ignore[assignment]
    return ChatService(store, ChatHub(), ingest, config, clock=lambda: datetime.now(UTC))


async def test_a_token_resumes_only_a_session_of_the_same_verified_email() -> None:
    chat = chat_service()
    signature = sign_visitor_email(IDENTITY_SECRET, "ada@example.com")
    ada = chat.verify_email("acme-widget", "Ada@example.com", signature)
    verified = await chat.start("acme-widget", "Ada", "Ada@example.com", ada)
    anonymous = await chat.start("acme-widget", "Someone")
    assert verified.session.verified_email == "ada@example.com"
    assert anonymous.session.verified_email == ""

    same = await chat.resume("acme-widget", verified.token, verified_email="ada@example.com")
    assert same is not None
    assert same.session.id == verified.session.id
    assert await chat.resume("acme-widget", verified.token) is None  # logged out
    assert await chat.resume("acme-widget", verified.token, verified_email="alan@example.com") is None
    assert await chat.resume("acme-widget", anonymous.token, verified_email="ada@example.com") is None
    still = await chat.resume("acme-widget", anonymous.token)
    assert still is not None
    assert still.session.id == anonymous.session.id


# --- ChatDelivery's checks ---

class _NoTranscript:
    """A ChatService that must not be reached."""

    async def reply(self, *args: Any, **kwargs: Any) -> ChatMessage:
        raise AssertionError("the transcript was written")


def request(**changes: Any) -> OutboundRequest:
    values: dict[str, Any] = {"id": "out-1", "workspace_id": "ws-1", "contact_id": "c", "channel": "chat",
                              "recipient_kind": "chat_visitor", "recipient": "visitor-1", "text": "Hello",
                              "conversation_id": "session-1"}
    return OutboundRequest(**{**values, **changes})


@pytest.mark.parametrize("changes", [{"recipient_kind": "email"}, {"text": "  "}, {"text": "x" * 20_001}])
async def test_a_reply_that_can_never_be_delivered_fails_permanently(changes: dict[str, Any]) -> None:
    delivery = ChatDelivery(_NoTranscript())  # type: ignore[arg-type]
    with pytest.raises(DeliveryFailed) as failed:
        await delivery.send(request(**changes))
    assert failed.value.permanent

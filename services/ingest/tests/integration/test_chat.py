"""Web chat against the real servers: a visitor's session, socket and REST fallback, the
transcript and resume, agents' replies through crm.outbound.v1, typing and read notices, the
origin and rate checks, a visitor's message becoming an interaction of a contact, and identity
verification (a signed email joins the contact that owns it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from crm_ingest.chat.service import ChatService
from crm_ingest.domain.chat import provider_message_id
from crm_ingest.outbound.base import OutboundRequest
from crm_ingest.outbound.chat import ChatDelivery
from crm_ingest.wire import outbound_requested
from crmkit.ids import uuid7
from crmkit.ratelimit import RateLimiter
from crmkit.testing import bearer, eventually, publish

from .chat_support import Visitor, chat_of, served, signed
from .conftest import CHAT_ORIGIN, CHAT_WIDGET, WORKSPACE, Platform

pytestmark = pytest.mark.integration

Frame = dict[str, Any]


@pytest.fixture(scope="module")
async def base_url(platform: Platform) -> AsyncIterator[str]:
    async with served(platform.ingest_app) as url:
        yield url


@pytest.fixture
async def visitor(base_url: str) -> AsyncIterator[Visitor]:
    async with Visitor(base_url) as person:
        await person.start(name="Grace Hopper", email="grace@example.com")
        yield person


async def receive(socket: ClientConnection, until: Callable[[list[Frame]], bool],
                  timeout: float = 10) -> list[Frame]:
    """Frames from the socket until ``until`` holds for what came."""
    frames: list[Frame] = []

    async def collect() -> None:
        while not until(frames):
            frames.append(json.loads(await socket.recv()))

    try:
        await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out; frames so far: {frames}") from None
    return frames


def messages(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f["type"] == "message"]


def has(kind: str, count: int = 1) -> Callable[[list[Frame]], bool]:
    return lambda frames: sum(1 for f in frames if f["type"] == kind) >= count


def reply(person: Visitor, text: str, **fields: Any) -> OutboundRequest:
    return OutboundRequest(id=f"reply-{uuid7()}", workspace_id=WORKSPACE, contact_id="", channel="chat",
                           recipient_kind="chat_visitor", recipient=person.visitor_id, text=text,
                           conversation_id=person.session_id, **fields)


def open_socket(person: Visitor, after: int = 0, origin: str = CHAT_ORIGIN,
                token: str | None = None) -> Any:
    return connect(person.socket_url(after, token), origin=origin, open_timeout=5)  # type: ignore[arg-type]


async def test_a_visitors_message_over_the_socket_becomes_an_interaction_of_a_chat_visitor(
        platform: Platform, visitor: Visitor) -> None:
    async with open_socket(visitor) as socket:
        await socket.send(json.dumps({"type": "message", "client_id": "m-1", "text": "Is my order late?"}))
        frames = await receive(socket, lambda f: has("ack")(f) and has("message")(f))
    assert [f for f in frames if f["type"] == "ack"] == [{"type": "ack", "client_id": "m-1", "seq": 1}]
    assert messages(frames)[0] | {"at": None} == {
        "type": "message", "seq": 1, "direction": "inbound", "text": "Is my order late?", "client_id": "m-1",
        "at": None}

    stored = await platform.wait_stored(provider_message_id(visitor.session_id, 1), "chat")
    assert (stored["channel"], stored["direction"]) == ("chat", "inbound")
    assert (stored["sender"], stored["sender_name"]) == (visitor.visitor_id, "Grace Hopper")
    assert stored["conversation_id"] == visitor.session_id
    assert stored["text"] == "Is my order late?"
    contact = (await platform.contacts.get(f"/v1/contacts/{stored['contact_id']}",
                                           headers=bearer(platform.token))).json()
    assert {"kind": "chat_visitor", "value": visitor.visitor_id} in contact["identities"]
    # The email the visitor typed is unverified: never an identity of the contact.
    assert contact["emails"] == []
    assert all(i["kind"] != "email" for i in contact["identities"])


async def test_a_retried_send_with_the_same_client_id_stores_the_message_once(visitor: Visitor) -> None:
    first = await visitor.send("same-1", "Hello?")
    again = await visitor.send("same-1", "Hello?")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"type": "ack", "client_id": "same-1", "seq": 1}
    async with open_socket(visitor) as socket:
        await socket.send(json.dumps({"type": "message", "client_id": "same-1", "text": "Hello?"}))
        frames = await receive(socket, has("ack"))
    assert {"type": "ack", "client_id": "same-1", "seq": 1} in frames
    assert [m["seq"] for m in (await visitor.messages())["messages"]] == [1]


async def test_a_reply_through_crm_outbound_reaches_the_open_socket_and_is_stored(
        platform: Platform, visitor: Visitor) -> None:
    async with open_socket(visitor) as socket:
        await socket.send(json.dumps({"type": "message", "client_id": "q-1", "text": "Anyone there?"}))
        await receive(socket, has("ack"))
        await publish(platform.infra, [outbound_requested(reply(visitor, "Yes, how can I help?"))])
        frames = await receive(socket, lambda f: any(m["direction"] == "outbound" for m in messages(f)))
    answer = next(m for m in messages(frames) if m["direction"] == "outbound")
    assert (answer["seq"], answer["text"]) == (2, "Yes, how can I help?")
    assert "client_id" not in answer
    stored = await platform.wait_stored(provider_message_id(visitor.session_id, 2), "chat")
    assert (stored["direction"], stored["text"]) == ("outbound", "Yes, how can I help?")


async def test_a_reconnecting_visitor_gets_every_message_after_its_seq_then_live_ones(
        platform: Platform, visitor: Visitor) -> None:
    delivery = ChatDelivery(chat_of(platform))
    for n in (1, 2):
        assert (await visitor.send(f"r-{n}", f"question {n}")).status_code == 200
    request = reply(visitor, "answer 1")
    sent = await delivery.send(request)
    assert sent.provider_message_id == provider_message_id(visitor.session_id, 3)
    assert (await delivery.send(request)) == sent  # the same request again: the same message

    async with open_socket(visitor, after=1) as socket:
        backlog = await receive(socket, lambda f: len(messages(f)) >= 2)
        assert [(m["seq"], m["direction"], m["text"]) for m in messages(backlog)] == [
            (2, "inbound", "question 2"), (3, "outbound", "answer 1")]
        await delivery.send(reply(visitor, "answer 2"))
        live = await receive(socket, has("message"))
    assert [(m["seq"], m["text"]) for m in messages(live)] == [(4, "answer 2")]


async def test_a_reply_written_by_another_replica_reaches_the_socket_by_polling(
        platform: Platform, visitor: Visitor) -> None:
    chat = chat_of(platform)
    session = await chat.store.session(WORKSPACE, visitor.session_id)
    assert session is not None
    async with open_socket(visitor) as socket:
        # Straight into the transcript, as another replica would: this hub hears nothing.
        await chat.store.append(session, "outbound", "from elsewhere", chat.clock(), outbound_id="x-1")
        frames = await receive(socket, has("message"), timeout=5)
    assert messages(frames)[0]["text"] == "from elsewhere"


async def test_the_rest_fallback_long_polls_until_a_reply(platform: Platform, visitor: Visitor) -> None:
    assert (await visitor.send("p-1", "over REST")).json()["seq"] == 1
    assert [m["text"] for m in (await visitor.messages(after=0))["messages"]] == ["over REST"]

    async def answer_soon() -> None:
        await asyncio.sleep(0.3)
        await ChatDelivery(chat_of(platform)).send(reply(visitor, "over REST too"))

    answering = asyncio.create_task(answer_soon())
    started = asyncio.get_running_loop().time()
    body = await visitor.messages(after=1, wait=10)
    await answering
    assert asyncio.get_running_loop().time() - started < 5
    assert [(m["seq"], m["direction"], m["text"]) for m in body["messages"]] == [
        (2, "outbound", "over REST too")]
    empty = await visitor.messages(after=2, wait=0.2)
    assert empty["messages"] == []


async def test_typing_and_read_notices_go_both_ways(platform: Platform, visitor: Visitor) -> None:
    agent = bearer(platform.token)
    state_url = f"/v1/chat/sessions/{visitor.session_id}"
    async with open_socket(visitor) as socket:
        await socket.send(json.dumps({"type": "typing"}))
        await socket.send(json.dumps({"type": "message", "client_id": "t-1", "text": "hi"}))
        await receive(socket, has("ack"))
        await socket.send(json.dumps({"type": "read", "seq": 1}))

        async def visitor_state() -> bool:
            body = (await platform.ingest.get(state_url, headers=agent)).json()
            return bool(body["visitor_typing"] and body["visitor_read_seq"] == 1)

        await eventually(visitor_state, timeout=5, what="the visitor's typing and read on the session")
        assert (await platform.ingest.post(f"{state_url}/typing", headers=agent)).status_code == 204
        read = await platform.ingest.post(f"{state_url}/read", json={"seq": 1}, headers=agent)
        assert read.status_code == 204
        frames = await receive(socket, lambda f: has("typing")(f) and has("read")(f))
    assert {"type": "typing", "from": "agent"} in frames
    assert {"type": "read", "from": "agent", "seq": 1} in frames
    state = (await platform.ingest.get(state_url, headers=agent)).json()
    assert (state["visitor_id"], state["name"], state["email"]) == (visitor.visitor_id, "Grace Hopper",
                                                                     "grace@example.com")
    assert (state["last_seq"], state["agent_read_seq"]) == (1, 1)
    missing = await platform.ingest.post("/v1/chat/sessions/nope/typing", headers=agent)
    assert missing.status_code == 404
    assert (await platform.ingest.post(f"{state_url}/typing")).status_code == 401


async def test_a_visitor_token_resumes_the_session_and_a_bad_one_is_refused(
        base_url: str, visitor: Visitor) -> None:
    old_session, old_visitor = visitor.session_id, visitor.visitor_id
    resumed = await visitor.start()
    assert resumed["resumed"] is True
    assert (visitor.session_id, visitor.visitor_id) == (old_session, old_visitor)

    async with open_socket(visitor, token="not-a-token") as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await receive(socket, lambda f: False)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
    refused = await visitor.http.get("/messages", headers={"Authorization": "Bearer not-a-token"})
    assert refused.status_code == 401

    async with Visitor(base_url) as stranger:
        stranger.token = "expired-or-forged"
        fresh = await stranger.start()
        assert fresh["resumed"] is False
        assert fresh["visitor_id"] != old_visitor


async def test_other_sites_pages_are_kept_out_and_the_widgets_site_gets_cors(
        base_url: str, visitor: Visitor) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_socket(visitor, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    async with Visitor(base_url, origin="https://evil.example") as evil:
        assert (await evil.http.post("/sessions", json={})).status_code == 403

    preflight = await visitor.http.options("/messages", headers={
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == CHAT_ORIGIN
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    answer = await visitor.http.get("/messages", headers=visitor.auth)
    assert answer.headers["access-control-allow-origin"] == CHAT_ORIGIN
    unknown = await visitor.http.post(f"{base_url}/v1/chat/no-such-widget/sessions", json={})
    assert unknown.status_code == 404


async def test_rates_per_visitor_and_per_address_are_enforced(
        platform: Platform, visitor: Visitor, monkeypatch: pytest.MonkeyPatch) -> None:
    chat = chat_of(platform)
    monkeypatch.setitem(chat.limiters, "message", RateLimiter(0.01, 2))
    monkeypatch.setitem(chat.limiters, "session", RateLimiter(0.01, 1))
    assert (await visitor.send("l-1", "one")).status_code == 200
    assert (await visitor.send("l-2", "two")).status_code == 200
    limited = await visitor.send("l-3", "three")
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["access-control-allow-origin"] == CHAT_ORIGIN  # the widget can read it
    async with open_socket(visitor) as socket:
        await socket.send(json.dumps({"type": "message", "client_id": "l-3", "text": "three"}))
        with pytest.raises(ConnectionClosed) as closed:
            await receive(socket, lambda f: False)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4429

    async with Visitor(visitor.base_url) as newcomer:
        assert (await newcomer.http.post("/sessions", json={})).status_code == 201
        second = await newcomer.http.post("/sessions", json={})
        assert second.status_code == 429
        # A returning visitor (a valid token) is not a new session: never refused for that.
        assert (await visitor.http.post("/sessions", json={"token": visitor.token})).status_code == 200


async def test_a_message_over_the_size_limit_is_refused(visitor: Visitor) -> None:
    too_long = "x" * 4097
    assert (await visitor.send("big-1", too_long)).status_code == 413
    async with open_socket(visitor) as socket:
        await socket.send(json.dumps({"type": "message", "client_id": "big-2", "text": too_long}))
        with pytest.raises(ConnectionClosed) as closed:
            await receive(socket, lambda f: False)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    assert (await visitor.messages())["messages"] == []


async def test_a_message_the_broker_did_not_take_is_kept_and_sent_once_retried_or_swept(
        platform: Platform, visitor: Visitor, monkeypatch: pytest.MonkeyPatch) -> None:
    chat: ChatService = chat_of(platform)
    real_accept = chat.ingest.accept

    async def broker_down(*args: Any, **kwargs: Any) -> str:
        raise KafkaConnectionError("the broker is down")

    monkeypatch.setattr(chat.ingest, "accept", broker_down)
    down = await visitor.send("b-1", "while the broker is down")
    assert down.status_code == 503
    async with open_socket(visitor) as socket:
        await socket.send(json.dumps({"type": "message", "client_id": "b-2", "text": "left behind"}))
        frames = await receive(socket, has("error"))
    assert {"code": "unavailable", "client_id": "b-2"}.items() <= frames[-1].items()
    monkeypatch.setattr(chat.ingest, "accept", real_accept)

    # The widget retries with the same client id: the same message, now on its way.
    assert (await visitor.send("b-1", "while the broker is down")).json()["seq"] == 1
    # The other one's visitor left: the sweep sends it once it is old enough.
    later = chat.clock() + timedelta(minutes=1)
    monkeypatch.setattr(chat, "clock", lambda: later)
    assert await chat.resend_unaccepted() >= 1
    monkeypatch.undo()
    assert [m["seq"] for m in (await visitor.messages())["messages"]] == [1, 2]
    for seq in (1, 2):
        await platform.wait_stored(provider_message_id(visitor.session_id, seq), "chat")


async def test_a_persons_erasure_takes_their_chat_sessions_and_transcripts(
        platform: Platform, visitor: Visitor) -> None:
    assert (await visitor.send("e-1", "forget me")).status_code == 200
    stored = await platform.wait_stored(provider_message_id(visitor.session_id, 1), "chat")
    contact = f"/v1/contacts/{stored['contact_id']}/erasure"
    assert (await platform.contacts.post(contact, headers=bearer(platform.token))).status_code == 202

    async def confirmed() -> bool:
        status = (await platform.contacts.get(contact, headers=bearer(platform.token))).json()
        return "ingest" in status["confirmed"]

    await eventually(confirmed, what="ingest's confirmation of the erasure")
    db = chat_of(platform).store.db
    scope = {"workspace_id": WORKSPACE, "visitor_id": visitor.visitor_id}
    assert await db.chat_messages.count_documents(scope) == 0
    assert await db.chat_sessions.count_documents(scope) == 0
    # The token now names no session: the widget starts over as a new visitor.
    assert (await visitor.start())["resumed"] is False


# --- identity verification ---

async def a_contact_with_email(platform: Platform) -> tuple[str, str]:
    """A contact created through the contacts API, with an email identity: its id and email."""
    email = f"ada.{uuid7().hex[-12:]}@example.com"
    created = await platform.contacts.post("/v1/contacts", headers=bearer(platform.token),
                                           json={"display_name": "Ada Lovelace", "emails": [email]})
    assert created.status_code == 201, created.text
    return created.json()["id"], email


async def test_a_visitor_whose_email_the_site_signed_joins_the_contact_that_owns_it(
        platform: Platform, base_url: str) -> None:
    contact_id, email = await a_contact_with_email(platform)
    async with Visitor(base_url) as person:
        # The site signs the email as it has it; ingest compares it trimmed and lower-cased.
        opened = await person.start(name="Ada", **signed(f" {email.upper()} "))
        assert (opened["resumed"], opened["email_verified"]) == (False, True)
        async with open_socket(person) as socket:
            await socket.send(json.dumps({"type": "message", "client_id": "v-1", "text": "My invoice?"}))
            await receive(socket, has("ack"))
        assert (await person.send("v-2", "over REST too")).status_code == 200
        first = await platform.wait_stored(provider_message_id(person.session_id, 1), "chat")
        second = await platform.wait_stored(provider_message_id(person.session_id, 2), "chat")
        state = (await platform.ingest.get(f"/v1/chat/sessions/{person.session_id}",
                                           headers=bearer(platform.token))).json()
    assert first["contact_id"] == second["contact_id"] == contact_id
    assert first["sender"] == person.visitor_id
    assert first["metadata"] == {"widget": CHAT_WIDGET, "verified_email": email}
    assert state["verified_email"] == email
    contact = (await platform.contacts.get(f"/v1/contacts/{contact_id}",
                                           headers=bearer(platform.token))).json()
    assert {"kind": "chat_visitor", "value": person.visitor_id} in contact["identities"]


async def test_without_a_signature_the_same_email_is_only_a_hint_and_a_new_contact(
        platform: Platform, base_url: str) -> None:
    contact_id, email = await a_contact_with_email(platform)
    async with Visitor(base_url) as person:
        opened = await person.start(name="Not Ada", email=email)
        assert opened["email_verified"] is False
        assert (await person.send("u-1", "Hello")).status_code == 200
        stored = await platform.wait_stored(provider_message_id(person.session_id, 1), "chat")
    assert stored["contact_id"] != contact_id
    assert stored["metadata"] == {"widget": CHAT_WIDGET, "unverified_email": email}
    newcomer = (await platform.contacts.get(f"/v1/contacts/{stored['contact_id']}",
                                            headers=bearer(platform.token))).json()
    assert newcomer["emails"] == []


async def test_a_wrong_signature_or_one_for_a_widget_without_a_secret_is_refused(
        platform: Platform, base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    email = "ada@example.com"
    async with Visitor(base_url) as person:
        wrong = [signed(email, secret="another-secret-of-32-characters-or-more"),
                 {"email": "eve@example.com", "email_signature": signed(email)["email_signature"]},
                 {"email": email, "email_signature": "not hex"},
                 {"email_signature": signed(email)["email_signature"]}]
        for body in wrong:
            refused = await person.http.post("/sessions", json=body)
            assert refused.status_code == 401, body
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.json()["type"].endswith("/invalid-identity-signature")
            assert refused.headers["access-control-allow-origin"] == CHAT_ORIGIN  # the widget reads it

        chat = chat_of(platform)
        widget = chat.config.widgets[CHAT_WIDGET]
        monkeypatch.setitem(chat.config.widgets, CHAT_WIDGET,
                            widget.model_copy(update={"identity_secret": None}))
        unverifiable = await person.http.post("/sessions", json=signed(email))
        assert unverifiable.status_code == 401
        assert "does not verify" in unverifiable.json()["detail"]
        # Without a signature, the same widget still takes anonymous visitors.
        assert (await person.http.post("/sessions", json={"email": email})).status_code == 201


async def test_a_token_resumes_only_a_session_of_the_same_verified_email(base_url: str) -> None:
    async with Visitor(base_url) as person:
        await person.start(**signed("grace@example.com"))
        verified_session, verified_visitor = person.session_id, person.visitor_id
        again = await person.start(**signed("Grace@example.com"))
        assert (again["resumed"], person.session_id) == (True, verified_session)

        # The person logged out: the token no longer speaks for them.
        anonymous = await person.start(email="grace@example.com")
        assert (anonymous["resumed"], anonymous["email_verified"]) == (False, False)
        assert anonymous["visitor_id"] != verified_visitor
        # Someone logs in on that browser: a new visitor again, never the anonymous one's session.
        other = await person.start(**signed("alan@example.com"))
        assert (other["resumed"], other["email_verified"]) == (False, True)
        assert other["session_id"] not in (verified_session, anonymous["session_id"])
        assert other["visitor_id"] not in (verified_visitor, anonymous["visitor_id"])
        # Grace again, with her old token: her own session, not Alan's.
        person.token = again["token"]
        back = await person.start(**signed("grace@example.com"))
        assert (back["resumed"], back["session_id"]) == (True, verified_session)

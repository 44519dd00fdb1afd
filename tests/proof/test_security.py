"""Security checks on the running platform: every operation of every service needs a token,
except a short list of documented public doors, each with its reason; every inbound channel's
receiver refuses an unsigned, a forged and (where its scheme is timestamped) a stale request,
and a replayed provider message changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from crm_ingest.domain import meta, signing, twilio
from crmkit.testing import eventually

from ..e2e.conftest import WAIT
from ..e2e.test_channels import whatsapp_delivery
from ._openapi import Operation, minimal_body, operations
from ._platform import (
    CHANNEL_SECRETS,
    COMMERCE_STORE,
    EMAIL_SOURCE,
    INSTAGRAM_ACCOUNT,
    MESSENGER_PAGE,
    SERVICES,
    SMS_NUMBER,
    SMS_URL,
    TELEGRAM_BOT,
    WORKSPACE_B,
    Proof,
)
from ._seed import Seeds

pytestmark = pytest.mark.e2e

PROBE = "a probe: Kubernetes and load balancers call it without credentials; it tells nothing"
RECEIVER = "a channel's webhook receiver: the provider's signature decides (the channel matrix below)"
VISITOR = "a website visitor's chat: public by design, its visitor token decides (ingest's tests)"
# (service or "*", method, path) -> why it answers without a workspace token.
PUBLIC: dict[tuple[str, str, str], str] = {
    ("*", "GET", "/healthz"): PROBE,
    ("*", "GET", "/readyz"): PROBE,
    ("ticketing", "GET", "/v1/public/kb/{workspace}/articles"): "the published knowledge base",
    ("ticketing", "GET", "/v1/public/kb/{workspace}/articles/{slug}"): "the published knowledge base",
    ("ticketing", "GET", "/v1/public/csat/{token}"): "the customer's survey link, a signed token",
    ("ticketing", "POST", "/v1/public/csat/{token}"): "the customer's survey answer, a signed token",
    ("campaigns", "HEAD", "/v1/t/o/{token}.gif"): "the open pixel: a signed token in a recipient's mail",
    ("campaigns", "GET", "/v1/t/o/{token}.gif"): "the open pixel: a signed token in a recipient's mail",
    ("campaigns", "HEAD", "/v1/t/c/{token}"): "a tracked link: a signed token in a recipient's mail",
    ("campaigns", "GET", "/v1/t/c/{token}"): "a tracked link: a signed token in a recipient's mail",
    ("campaigns", "GET", "/v1/t/u/{token}"): "the unsubscribe page: a signed token (RFC 8058)",
    ("campaigns", "POST", "/v1/t/u/{token}"): "one-click unsubscribe: a signed token (RFC 8058)",
    ("ingest", "GET", "/v1/channels/whatsapp/webhook"): "Meta's subscription handshake: the verify token",
    ("ingest", "POST", "/v1/channels/whatsapp/webhook"): RECEIVER,
    ("ingest", "GET", "/v1/channels/messenger/webhook"): "Meta's subscription handshake: the verify token",
    ("ingest", "POST", "/v1/channels/messenger/webhook"): RECEIVER,
    ("ingest", "GET", "/v1/channels/instagram/webhook"): "Meta's subscription handshake: the verify token",
    ("ingest", "POST", "/v1/channels/instagram/webhook"): RECEIVER,
    ("ingest", "POST", "/v1/channels/telegram/{bot}/webhook"): RECEIVER,
    ("ingest", "POST", "/v1/channels/sms/webhook"): RECEIVER,
    ("ingest", "POST", "/v1/channels/commerce/{store}/webhook"): RECEIVER,
    ("ingest", "POST", "/v1/channels/email/sources/{source}/inbound"): RECEIVER,
    ("ingest", "POST", "/v1/chat/{widget}/sessions"): VISITOR,
    ("ingest", "POST", "/v1/chat/{widget}/messages"): VISITOR,
    ("ingest", "GET", "/v1/chat/{widget}/messages"): VISITOR,
    ("ingest", "POST", "/v1/chat/{widget}/events"): VISITOR,
    ("ingest", "GET", "/chat/widget.js"): "the chat widget's script, embedded in public websites",
    ("ingest", "GET", "/chat/demo"): "the chat widget's demo page (the widget key decides)",
}


def _public(op: Operation) -> bool:
    return (op.service, op.method, op.path) in PUBLIC or ("*", op.method, op.path) in PUBLIC


@pytest.mark.parametrize("service", SERVICES)
async def test_every_operation_without_a_token_is_401_except_the_public_ones(
    proof: Proof, seeds: Seeds, service: str,
) -> None:
    ids = seeds.ids.get(service, {})
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=proof.platform.url(service), timeout=30) as http:
        for op in operations(service, proof.specs[service]):
            if _public(op):
                continue
            request: dict[str, Any] = {}
            if (body := minimal_body(proof.specs[service], op)) is not None:
                request["content"] = body[1] if isinstance(body[1], bytes) else json.dumps(body[1])
                request["headers"] = {"Content-Type": body[0]}
            url = op.fill({name: ids.get(name, "x") for name in op.parameters})
            answer = await http.request(op.method, url, **request)
            if answer.status_code != 401:
                failures.append(f"{op.method} {op.path}: {answer.status_code} without a token")
            elif op.method != "HEAD" and not answer.headers.get("content-type", "").startswith(
                    "application/problem+json"):
                failures.append(f"{op.method} {op.path}: 401 without problem+json")
    assert not failures, "\n".join(failures)


def test_every_public_door_exists(proof: Proof) -> None:
    known = {(op.method, op.path) for service in SERVICES for op in operations(service, proof.specs[service])}
    assert not {(method, path) for _, method, path in PUBLIC} - known


@dataclass(frozen=True)
class Receiver:
    """How one channel's provider signs a request, and an authentic-looking body for it."""

    url: str
    content_type: str
    body: bytes
    sign: Callable[[bytes, bytes, float], dict[str, str]]  # (secret, body, unix time) -> headers
    secret: Callable[[Proof], bytes]
    timestamped: bool  # whether a stale signature can be told from a fresh one


def _meta(secret: bytes, body: bytes, at: float) -> dict[str, str]:
    return {"X-Hub-Signature-256": meta.sign(secret, body)}


def _crm(secret: bytes, body: bytes, at: float) -> dict[str, str]:
    return signing.signed_headers(secret, body, now=at)


def _telegram(secret: bytes, body: bytes, at: float) -> dict[str, str]:
    return {"X-Telegram-Bot-Api-Secret-Token": secret.decode()}


def _twilio(secret: bytes, body: bytes, at: float) -> dict[str, str]:
    return {"X-Twilio-Signature": twilio.sign(secret, SMS_URL, parse_qsl(body.decode()))}


def _page(kind: str, account: str) -> bytes:
    now = int(time.time() * 1000)
    event = {"sender": {"id": "9001"}, "recipient": {"id": account}, "timestamp": now,
             "message": {"mid": "m.proof", "text": "hi"}}
    entry = {"id": account, "time": now, "messaging": [event]}
    return json.dumps({"object": kind, "entry": [entry]}).encode()


def _secret(name: str) -> Callable[[Proof], bytes]:
    return lambda proof: CHANNEL_SECRETS[name].encode()


RECEIVERS: dict[str, Receiver] = {
    "/v1/channels/whatsapp/webhook": Receiver(
        "/v1/channels/whatsapp/webhook", "application/json",
        whatsapp_delivery("447700900001", "wamid.p", "hi"), _meta,
        lambda proof: proof.platform.whatsapp_secret.encode(), False),
    "/v1/channels/messenger/webhook": Receiver(
        "/v1/channels/messenger/webhook", "application/json", _page("page", MESSENGER_PAGE), _meta,
        _secret("messenger"), False),
    "/v1/channels/instagram/webhook": Receiver(
        "/v1/channels/instagram/webhook", "application/json", _page("instagram", INSTAGRAM_ACCOUNT), _meta,
        _secret("instagram"), False),
    "/v1/channels/telegram/{bot}/webhook": Receiver(
        f"/v1/channels/telegram/{TELEGRAM_BOT}/webhook", "application/json", json.dumps({
            "update_id": 1, "message": {"message_id": 1, "date": int(time.time()), "text": "hi",
                                        "chat": {"id": 5, "type": "private"},
                                        "from": {"id": 5, "first_name": "A"}},
        }).encode(), _telegram, _secret("telegram"), False),
    "/v1/channels/sms/webhook": Receiver(
        "/v1/channels/sms/webhook", "application/x-www-form-urlencoded",
        f"MessageSid=SMproof&From=%2B15550100001&To={SMS_NUMBER.replace('+', '%2B')}&Body=hi".encode(),
        _twilio, _secret("sms"), False),
    "/v1/channels/commerce/{store}/webhook": Receiver(
        f"/v1/channels/commerce/{COMMERCE_STORE}/webhook", "application/json",
        b'{"type": "order.created", "id": "o-1"}', _crm, _secret("commerce"), True),
    "/v1/channels/email/sources/{source}/inbound": Receiver(
        f"/v1/channels/email/sources/{EMAIL_SOURCE}/inbound", "message/rfc822",
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n"
        b"Message-ID: <p@example.com>\r\n\r\nhi\r\n",
        _crm, _secret("email_source"), True),
}
# Receivers that take no provider signature: they need a workspace token (the auth test above).
TOKEN_AUTHENTICATED = {"/v1/channels/email/inbound"}


async def test_every_channel_receiver_refuses_unsigned_forged_and_stale_requests(proof: Proof) -> None:
    routes = {op.path for op in operations("ingest", proof.specs["ingest"])
              if op.method == "POST" and op.path.startswith("/v1/channels/")}
    assert routes - TOKEN_AUTHENTICATED <= RECEIVERS.keys(), "a channel receiver without a row in RECEIVERS"
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=proof.platform.url("ingest"), timeout=30) as http:
        for path, receiver in RECEIVERS.items():
            now, secret = time.time(), receiver.secret(proof)
            # The control: signed with the right secret, the same request gets past the check.
            authentic = await http.post(receiver.url, content=receiver.body, headers={
                **receiver.sign(secret, receiver.body, now), "Content-Type": receiver.content_type})
            if authentic.status_code in (401, 404):
                failures.append(f"{path} authentic: {authentic.status_code} {authentic.text[:200]}")
            forged = receiver.sign(b"not-the-secret-" + secret, receiver.body, now)
            attempts: dict[str, dict[str, str]] = {"unsigned": {}, "forged": forged}
            if receiver.timestamped:
                attempts["stale"] = receiver.sign(secret, receiver.body, now - 3600)
            for what, headers in attempts.items():
                answer = await http.post(receiver.url, content=receiver.body,
                                         headers={**headers, "Content-Type": receiver.content_type})
                if answer.status_code != 401:
                    failures.append(f"{path} {what}: {answer.status_code} {answer.text[:200]}")
                elif not answer.headers.get("content-type", "").startswith("application/problem+json"):
                    failures.append(f"{path} {what}: 401 without problem+json")
    assert not failures, "\n".join(failures)


async def test_a_replayed_whatsapp_delivery_is_accepted_and_changes_nothing(
    proof: Proof, seeds: Seeds,
) -> None:
    """Meta's signature has no timestamp, so a captured delivery verifies again: what keeps it
    harmless is that an interaction's id derives from the channel and the provider's message
    id. The same signed delivery sent twice, then another message from the same person, make
    two interactions, not three."""
    # B's person, whose phone is on their contact: their interactions are listed by contact.
    sender, tag = seeds.phones[0].removeprefix("+"), str(time.time_ns())
    contact_id = seeds.ids["contacts"]["contact_id"]
    reader = proof.headers(WORKSPACE_B)
    async with httpx.AsyncClient(base_url=proof.platform.url("ingest"), timeout=30) as http:
        async def deliver(message_id: str, text: str) -> None:
            body = whatsapp_delivery(sender, message_id, text)
            answer = await http.post("/v1/channels/whatsapp/webhook", content=body, headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": meta.sign(proof.platform.whatsapp_secret.encode(), body)})
            assert answer.status_code == 200, answer.text

        await deliver(f"wamid.replay-{tag}", f"once {tag}")
        await deliver(f"wamid.replay-{tag}", f"once {tag}")
        await deliver(f"wamid.after-{tag}", f"after {tag}")
        texts: list[str] = []

        async def after_stored() -> bool:
            page = await http.get("/v1/interactions", params={"contact_id": contact_id, "limit": 100},
                                  headers=reader)
            texts[:] = [i.get("text", "") for i in page.json()["items"] if tag in i.get("text", "")]
            return f"after {tag}" in texts

        await eventually(after_stored, timeout=WAIT, what="the message sent after the replay")
    assert sorted(texts) == [f"after {tag}", f"once {tag}"]

"""One person on three channels of the running platform, through its public doors only: an
email over SMTP, a chat from the website (where the person is logged in, so the site vouches
for their email), and a WhatsApp message land as three interactions on one contact's timeline;
an agent's reply on each channel (published on crm.outbound.v1, as ticketing publishes it) is
delivered back: by SMTP, threaded under the person's email; into the open chat; through the
WhatsApp Cloud API."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import smtplib
import time
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
import websockets

from crm_ingest.domain.whatsapp import sign
from crm_ingest.outbound.base import OutboundRequest
from crm_ingest.wire import outbound_requested
from crmkit.auth import issue_token
from crmkit.settings import InfraSettings
from crmkit.testing import eventually, publish

from .conftest import (
    CHANNELS_ADDRESS,
    CHANNELS_PHONE_NUMBER_ID,
    CHANNELS_WIDGET,
    CHANNELS_WORKSPACE,
    WAIT,
    Platform,
)

pytestmark = pytest.mark.e2e


def whatsapp_delivery(wa_id: str, message_id: str, text: str) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100078", "phone_number_id": CHANNELS_PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Grace"}, "wa_id": wa_id}],
        "messages": [{"from": wa_id, "id": message_id, "timestamp": str(int(time.time())),
                      "type": "text", "text": {"body": text}}],
    }
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]}).encode()


async def test_one_person_on_email_chat_and_whatsapp_answered_on_each(
    platform: Platform, infra_env: dict[str, str],
) -> None:
    token = issue_token(platform.secret, subject="e2e-agent", workspace_id=CHANNELS_WORKSPACE,
                        roles=["admin"])
    auth = {"Authorization": f"Bearer {token}"}
    tag = secrets.token_hex(4)
    address, phone = f"grace-{tag}@example.com", f"+4477009{secrets.randbelow(10**5):05d}"
    wa_id = phone.removeprefix("+")
    async with httpx.AsyncClient(base_url=platform.url("contacts"), timeout=30) as contacts, \
            httpx.AsyncClient(base_url=platform.url("ingest"), timeout=30) as ingest:
        # The person is a customer already: one contact with their email and phone number.
        created = await contacts.post("/v1/contacts", headers=auth, json={
            "first_name": "Grace", "last_name": "Hopper",
            "emails": [address], "phones": [phone]})
        assert created.status_code == 201, created.text
        contact_id = created.json()["id"]

        # 1. An email over SMTP, to the workspace's support address.
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = f"Grace <{address}>", CHANNELS_ADDRESS, "My invoice"
        mail["Message-ID"] = first_mail = f"<{tag}.1@example.com>"
        mail.set_content("Hello, my invoice is wrong.")

        def send_mail() -> None:
            with smtplib.SMTP("127.0.0.1", platform.smtp_port, timeout=30) as smtp:
                smtp.send_message(mail)

        await asyncio.to_thread(send_mail)

        # 2. A chat from the website, where Grace is logged in: the site signs her email.
        signature = hmac.new(platform.identity_secret.encode(), address.encode(), hashlib.sha256).hexdigest()
        session = await ingest.post(f"/v1/chat/{CHANNELS_WIDGET}/sessions", json={
            "name": "Grace", "email": address, "email_signature": signature},
            headers={"Origin": "http://127.0.0.1"})
        assert session.status_code in (200, 201), session.text
        chat = session.json()
        socket_url = (f"ws://127.0.0.1:{platform.ports['ingest'][0]}/v1/chat/{CHANNELS_WIDGET}/ws"
                      f"?token={chat['token']}&after=0")
        async with websockets.connect(socket_url, origin="http://127.0.0.1") as socket:  # type: ignore[arg-type]
            await socket.send(json.dumps({"type": "message", "client_id": f"c-{tag}",
                                          "text": "Hi, about my invoice again"}))
            ack = await next_frame(socket, lambda frame: frame.get("type") == "ack")
            assert ack["client_id"] == f"c-{tag}"

            # 3. A WhatsApp message from her phone number.
            body = whatsapp_delivery(wa_id, f"wamid.e2e-{tag}", "Any news on the invoice?")
            answer = await ingest.post("/v1/channels/whatsapp/webhook", content=body, headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": sign(platform.whatsapp_secret.encode(), body)})
            assert answer.status_code == 200, answer.text

            # Three interactions, one contact, one timeline.
            async def timeline() -> list[dict[str, Any]]:
                page = await ingest.get("/v1/interactions", params={"contact_id": contact_id, "limit": 50},
                                        headers=auth)
                assert page.status_code == 200, page.text
                return list(page.json()["items"])

            async def all_three() -> bool:
                return {i["channel"] for i in await timeline() if i["direction"] == "inbound"} == {
                    "email", "chat", "whatsapp"}

            await eventually(all_three, timeout=WAIT, what="email, chat and WhatsApp on one timeline")
            inbound = {i["channel"]: i for i in await timeline() if i["direction"] == "inbound"}
            assert {i["contact_id"] for i in inbound.values()} == {contact_id}

            # An agent answers on each channel, as ticketing does: through crm.outbound.v1.
            to = {"workspace_id": CHANNELS_WORKSPACE, "contact_id": contact_id, "origin": "ticketing"}
            parent = first_mail.strip("<>")
            replies = [
                OutboundRequest(id=f"reply-email-{tag}", channel="email", recipient_kind="email",
                                recipient=address, subject="Re: My invoice",
                                text="We have corrected your invoice.", in_reply_to=parent,
                                references=(parent,), **to),
                OutboundRequest(id=f"reply-chat-{tag}", channel="chat", recipient_kind="chat_visitor",
                                recipient=chat["visitor_id"], conversation_id=chat["session_id"],
                                text="It is fixed, Grace.", **to),
                OutboundRequest(id=f"reply-wa-{tag}", channel="whatsapp", recipient_kind="whatsapp",
                                recipient=phone, text="Your invoice is fixed.", **to),
            ]
            await publish(InfraSettings(kafka_bootstrap_servers=infra_env["CRM_KAFKA_BOOTSTRAP_SERVERS"]),
                          [outbound_requested(r) for r in replies])

            # The chat reply arrives in the open chat.
            reply = await next_frame(socket, lambda frame: frame.get("type") == "message"
                                     and frame.get("direction") == "outbound", timeout=WAIT)
            assert reply["text"] == "It is fixed, Grace."

        # The email reply reaches the relay, threaded under Grace's email.
        async def mailed() -> bool:
            return any(b"We have corrected" in m for m in platform.peers.mails)

        await eventually(mailed, timeout=WAIT, what="the email reply at the relay")
        sent = next(message_from_bytes(m, policy=policy.default) for m in platform.peers.mails
                    if b"We have corrected" in m)
        assert sent["In-Reply-To"] == first_mail
        assert first_mail in str(sent["References"])
        assert address in str(sent["To"])
        assert CHANNELS_ADDRESS in str(sent["From"])

        # The WhatsApp reply goes to the Cloud API, to her number, from the workspace's number.
        async def sent_whatsapp() -> bool:
            return any(body.get("to") in (wa_id, phone) for _, body in platform.peers.requests)

        await eventually(sent_whatsapp, timeout=WAIT, what="the WhatsApp reply at the Graph API")
        path, body = next((p, b) for p, b in platform.peers.requests if b.get("to") in (wa_id, phone))
        assert path.endswith(f"/{CHANNELS_PHONE_NUMBER_ID}/messages")
        assert body["text"]["body"] == "Your invoice is fixed."

        # Each reply is on the timeline too, as an outbound interaction marked sent.
        async def answered() -> bool:
            outbound = [i for i in await timeline() if i["direction"] == "outbound"]
            return {i["channel"] for i in outbound} == {"email", "chat", "whatsapp"}

        await eventually(answered, timeout=WAIT, what="the three replies on the timeline")


async def next_frame(socket: Any, wanted: Callable[[dict[str, Any]], bool],
                     timeout: float = 30.0) -> dict[str, Any]:
    """The next frame from the chat socket that ``wanted`` accepts (others, such as the echo
    of the visitor's own message or typing notices, are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            frame: dict[str, Any] = json.loads(await socket.recv())
            if wanted(frame):
                return frame

"""Stand-ins for what outbound delivery talks to: an SMTP relay (aiosmtpd) that keeps what it is
given, and one local HTTP server answering as WhatsApp, Messenger/Instagram, Telegram and Twilio
do. Their ports are chosen here, at import, so that the shared ``platform`` settings point at them
(``OUTBOUND_SETTINGS``); a test module that sends starts them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs
from uuid import uuid4

import uvicorn
from aiokafka import AIOKafkaConsumer
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from crmkit.kafka import Envelope
from crmkit.settings import InfraSettings
from crmkit.testing import eventually, free_port

SMTP_PORT = free_port()
PROVIDERS_PORT = free_port()
PROVIDERS_URL = f"http://127.0.0.1:{PROVIDERS_PORT}"
OUTBOUND_WORKSPACE = "ws-ingest"  # the platform's workspace
WHATSAPP_SENDER_ID = "106540352242900"
PAGE_ID = "1357911"
BOT_TOKEN = "4242:outbound-tests-bot-token-000"
TWILIO_SID = "AC" + "ab" * 16
TWILIO_FROM = "+15550001111"

# The platform's ingest settings for outbound delivery: every channel at these stand-ins.
OUTBOUND_SETTINGS: dict[str, Any] = {
    "smtp_relay_host": "127.0.0.1", "smtp_relay_port": SMTP_PORT, "smtp_tls": "none",
    "smtp_timeout_seconds": 5,
    "email_from": {OUTBOUND_WORKSPACE: "Acme Support <support@acme.example>"},
    "provider_timeout_seconds": 5,
    "graph_api_url": PROVIDERS_URL, "telegram_api_url": PROVIDERS_URL, "twilio_api_url": PROVIDERS_URL,
    "whatsapp_send": {OUTBOUND_WORKSPACE: {"phone_number_id": WHATSAPP_SENDER_ID, "token": "wa-token"}},
    "messenger_send": {OUTBOUND_WORKSPACE: {"token": "page-token", "page_id": PAGE_ID}},
    "instagram_send": {OUTBOUND_WORKSPACE: {"token": "ig-token", "page_id": PAGE_ID}},
    "telegram_send": {OUTBOUND_WORKSPACE: {"token": BOT_TOKEN}},
    "sms_send": {OUTBOUND_WORKSPACE: {"account_sid": TWILIO_SID, "auth_token": "twilio-token",
                                      "from_number": TWILIO_FROM}},
}


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    content: bytes


class _SinkHandler:
    """Takes every message; refuses recipients whose address starts with ``reject`` (550)
    or ``later`` (451), as a relay does."""

    def __init__(self, inbox: list[Mail]) -> None:
        self.inbox = inbox

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: SmtpEnvelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("reject"):
            return "550 5.1.1 No such user here"
        if address.startswith("later"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        content = envelope.original_content or b""
        self.inbox.append(Mail(str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 2.0.0 Ok: queued"


class SmtpSink:
    """An SMTP relay on SMTP_PORT that can be stopped and started again."""

    def __init__(self) -> None:
        self.inbox: list[Mail] = []
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(_SinkHandler(self.inbox), hostname="127.0.0.1", port=SMTP_PORT)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def with_message_id(self, message_id: str) -> list[Mail]:
        needle = f"Message-ID: <{message_id}>".encode()
        return [m for m in self.inbox if needle in m.content]


@dataclass
class Call:
    channel: str
    path: str
    headers: dict[str, str]
    body: Any  # the JSON or the form


@dataclass
class Providers:
    """The providers' stand-in: records every call; a recipient in ``failures`` gets those
    statuses first (one per call), then a success."""

    calls: list[Call] = field(default_factory=list)
    failures: dict[str, list[int]] = field(default_factory=dict)
    _next_id: int = 100

    def to(self, recipient: str) -> list[Call]:
        return [c for c in self.calls if _recipient(c) == recipient]

    def _answer(self, call: Call, success: Callable[[], JSONResponse],
                error: Callable[[int], dict[str, Any]]) -> JSONResponse:
        self.calls.append(call)
        pending = self.failures.get(_recipient(call), [])
        if pending:
            status = pending.pop(0)
            return JSONResponse(error(status), status_code=status)
        return success()

    async def whatsapp(self, request: Request) -> JSONResponse:
        body = await request.json()
        call = Call("whatsapp", request.url.path, dict(request.headers), body)
        return self._answer(call, lambda: JSONResponse({
            "messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}],
            "messages": [{"id": f"wamid.{uuid4().hex}"}]}), _meta_error)

    async def meta_send(self, request: Request) -> JSONResponse:
        body = await request.json()
        channel = "instagram" if request.headers.get("authorization") == "Bearer ig-token" else "messenger"
        call = Call(channel, request.url.path, dict(request.headers), body)
        return self._answer(call, lambda: JSONResponse({"recipient_id": body["recipient"]["id"],
                                                        "message_id": f"m_{uuid4().hex}"}), _meta_error)

    async def telegram(self, request: Request) -> JSONResponse:
        body = await request.json()
        call = Call("telegram", request.url.path, dict(request.headers), body)
        self._next_id += 1
        number = self._next_id
        return self._answer(call, lambda: JSONResponse({"ok": True, "result": {
            "message_id": number, "chat": {"id": int(body["chat_id"]), "type": "private"},
            "date": 1763884900, "text": body["text"]}}),
            lambda status: {"ok": False, "error_code": status, "description": "Bad Request: chat not found"})

    async def twilio(self, request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        call = Call("sms", request.url.path, dict(request.headers), form)
        return self._answer(call, lambda: JSONResponse({"sid": f"SM{uuid4().hex}", "status": "queued"},
                                                       status_code=201),
                            lambda status: {"code": 21211, "message": "The 'To' number is not valid.",
                                            "status": status})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/{version}/me/messages", self.meta_send, methods=["POST"]),
            Route("/{version}/{phone_number_id}/messages", self.whatsapp, methods=["POST"]),
            Route("/bot{token}/sendMessage", self.telegram, methods=["POST"]),
            Route("/2010-04-01/Accounts/{sid}/Messages.json", self.twilio, methods=["POST"]),
        ])


def _recipient(call: Call) -> str:
    body = call.body
    if call.channel in ("messenger", "instagram"):
        return str(body["recipient"]["id"])
    return str(body.get("to") or body.get("chat_id") or body.get("To") or "")


def _meta_error(status: int) -> dict[str, Any]:
    return {"error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100,
                      "fbtrace_id": "AbCdEf"}}


@asynccontextmanager
async def running_providers() -> AsyncIterator[Providers]:
    providers = Providers()
    config = uvicorn.Config(providers.app(), host="127.0.0.1", port=PROVIDERS_PORT, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: _started(server), timeout=10, what="the providers' stand-in")
        yield providers
    finally:
        server.should_exit = True
        await task


async def _started(server: uvicorn.Server) -> bool:
    return server.started


class TopicReader:
    """Reads a topic from its start and keeps every record, to look for the ones a test made."""

    def __init__(self, infra: InfraSettings, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=infra.kafka_bootstrap_servers,
                                         auto_offset_reset="earliest")
        self.records: list[tuple[Envelope, dict[str, bytes]]] = []

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def _read(self) -> None:
        for records in (await self.consumer.getmany(timeout_ms=100)).values():
            for record in records:
                headers = list(record.headers or ())
                self.records.append((Envelope.from_record(headers, record.value), dict(headers)))

    async def wait_for(self, match: Callable[[Envelope, dict[str, bytes]], bool], *, count: int = 1,
                       what: str = "the records") -> list[tuple[Envelope, dict[str, bytes]]]:
        """The records that ``match``, once there are ``count`` of them."""
        found: list[tuple[Envelope, dict[str, bytes]]] = []

        async def enough() -> bool:
            await self._read()
            found[:] = [(e, h) for e, h in self.records if match(e, h)]
            return len(found) >= count

        await eventually(enough, what=what)
        return found

    async def settle(self, seconds: float = 0.5) -> None:
        """Read what arrives for a while (to see that nothing more does)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            await self._read()



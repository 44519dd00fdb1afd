"""Ingest in-process, with contacts beside it, against MongoDB, PostgreSQL and the broker: one
platform per test module (stopped with it, so its consumers never act on later tests' events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI

from crm_contacts.main import create_app as create_contacts
from crm_contacts.settings import Settings as ContactsSettings
from crm_ingest.domain.interaction import interaction_id
from crm_ingest.domain.signing import signed_headers
from crm_ingest.domain.twilio import sign as twilio_sign
from crm_ingest.domain.whatsapp import sign
from crm_ingest.main import create_app as create_ingest
from crm_ingest.settings import Settings as IngestSettings
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, eventually, free_port, running_app, token_for

from .sinks import OUTBOUND_SETTINGS

WORKSPACE = "ws-ingest"
WHATSAPP_PHONE_ID = "106540352242922"  # the business number mapped to WORKSPACE
WHATSAPP_SECRET = "whatsapp-app-secret-for-the-tests-only"
WHATSAPP_VERIFY_TOKEN = "verify-token-for-the-tests"
# Messenger, Instagram, Telegram, SMS and commerce (test_social.py, test_commerce.py).
MESSENGER_PAGE = "104508412345678"  # a Page mapped to WORKSPACE
INSTAGRAM_ACCOUNT = "17841400000000001"  # an Instagram account mapped to WORKSPACE
META_SECRETS = {"messenger": "messenger-app-secret-for-the-tests-only",
                "instagram": "instagram-app-secret-for-the-tests-only"}
META_VERIFY_TOKEN = "meta-verify-token-for-the-tests"
TELEGRAM_BOT = "acme_support_bot"  # a bot of WORKSPACE
TELEGRAM_THROTTLED_BOT = "throttled_bot"  # takes 2 updates, then answers 429
TELEGRAM_SECRET = "telegram-secret-token-for-the-tests-only"
SMS_NUMBER = "+14155550100"  # a Twilio number of WORKSPACE
TWILIO_TOKEN = "5f9c0e1d2b3a4f6e7d8c9b0a1f2e3d4c"
# The URL Twilio is given, which it signs; the tests reach ingest at another one (a proxy's).
SMS_PUBLIC_URL = "https://crm.example.com/v1/channels/sms/webhook"
COMMERCE_STORE = "acme-shop"  # a store of WORKSPACE
COMMERCE_SECRET = "commerce-store-secret-for-the-tests-only"
CHAT_WIDGET = "acme-site-chat"  # a web chat widget of WORKSPACE
CHAT_ORIGIN = "https://shop.acme.example"  # the site allowed to embed it
CHAT_IDENTITY_SECRET = "chat-identity-secret-for-the-tests-only"  # signs its logged-in people's emails


@dataclass
class Platform:
    ingest: httpx.AsyncClient
    contacts: httpx.AsyncClient
    ingest_app: FastAPI
    infra: InfraSettings
    token: str

    async def interaction(self, message_id: str, channel: str = "email") -> httpx.Response:
        iid = interaction_id(WORKSPACE, channel, message_id)
        return await self.ingest.get(f"/v1/interactions/{iid}", headers=bearer(self.token))

    async def wait_stored(self, message_id: str, channel: str = "email") -> dict[str, Any]:
        async def stored() -> bool:
            return (await self.interaction(message_id, channel)).status_code == 200

        await eventually(stored, what="the interaction stored")
        body: dict[str, Any] = (await self.interaction(message_id, channel)).json()
        return body

    async def whatsapp(self, body: bytes, signature: str | None = None) -> httpx.Response:
        """A delivery as Meta posts it: signed with the app secret unless told otherwise."""
        headers = {"Content-Type": "application/json",
                   "X-Hub-Signature-256": signature or sign(WHATSAPP_SECRET.encode(), body)}
        return await self.ingest.post("/v1/channels/whatsapp/webhook", content=body, headers=headers)

    async def meta(self, channel: str, body: bytes, signature: str | None = None) -> httpx.Response:
        """A Messenger or Instagram delivery as Meta posts it: signed unless told otherwise."""
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": (
            sign(META_SECRETS[channel].encode(), body) if signature is None else signature)}
        return await self.ingest.post(f"/v1/channels/{channel}/webhook", content=body, headers=headers)

    async def telegram(self, body: bytes, bot: str = TELEGRAM_BOT, secret: str = TELEGRAM_SECRET
                       ) -> httpx.Response:
        """An update as Telegram posts it, with the secret token given to setWebhook."""
        return await self.ingest.post(f"/v1/channels/telegram/{bot}/webhook", content=body, headers={
            "Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret})

    async def sms(self, params: list[tuple[str, str]], signature: str | None = None) -> httpx.Response:
        """A Twilio request, signed over the public URL Twilio was given unless told otherwise."""
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": (
            twilio_sign(TWILIO_TOKEN.encode(), SMS_PUBLIC_URL, params) if signature is None else signature)}
        return await self.ingest.post("/v1/channels/sms/webhook", content=urlencode(params).encode(),
                                      headers=headers)

    async def commerce(self, body: bytes, store: str = COMMERCE_STORE, headers: dict[str, str] | None = None,
                       ) -> httpx.Response:
        """A store's event, signed now with the store's secret unless other headers are given."""
        signed = signed_headers(COMMERCE_SECRET.encode(), body) if headers is None else headers
        return await self.ingest.post(f"/v1/channels/commerce/{store}/webhook", content=body,
                                      headers={"Content-Type": "application/json", **signed})


@pytest.fixture(scope="module")
async def platform(infra: InfraSettings) -> AsyncIterator[Platform]:
    contacts_settings = ContactsSettings(http_port=free_port(), grpc_port=free_port(), infra=infra)
    ingest_settings = IngestSettings(
        http_port=free_port(), grpc_port=free_port(), infra=infra, max_email_bytes=64 * 1024,
        contacts_grpc_target=f"127.0.0.1:{contacts_settings.grpc_port}",
        whatsapp_accounts={WHATSAPP_PHONE_ID: {"workspace_id": WORKSPACE}},
        whatsapp_app_secret=WHATSAPP_SECRET, whatsapp_verify_token=WHATSAPP_VERIFY_TOKEN,
        max_whatsapp_bytes=64 * 1024,
        # Messenger, Instagram, Telegram, SMS and commerce webhooks, 16 KiB at most each here.
        messenger_pages={MESSENGER_PAGE: {"workspace_id": WORKSPACE}},
        messenger_app_secret=META_SECRETS["messenger"], messenger_verify_token=META_VERIFY_TOKEN,
        instagram_accounts={INSTAGRAM_ACCOUNT: {"workspace_id": WORKSPACE}},
        instagram_app_secret=META_SECRETS["instagram"], instagram_verify_token=META_VERIFY_TOKEN,
        telegram_bots={TELEGRAM_BOT: {"workspace_id": WORKSPACE},
                       TELEGRAM_THROTTLED_BOT: {"workspace_id": WORKSPACE, "rate_per_second": 0.01,
                                                "burst": 2}},
        telegram_secret_token=TELEGRAM_SECRET,
        sms_numbers={SMS_NUMBER: {"workspace_id": WORKSPACE}}, sms_auth_token=TWILIO_TOKEN,
        sms_public_url=SMS_PUBLIC_URL,
        commerce_stores={COMMERCE_STORE: {"workspace_id": WORKSPACE, "secret": COMMERCE_SECRET}},
        max_messenger_bytes=16 * 1024, max_instagram_bytes=16 * 1024, max_telegram_bytes=16 * 1024,
        max_sms_bytes=16 * 1024, max_commerce_bytes=16 * 1024,
        # Web chat; every test comes from 127.0.0.1, so the per-address rates are high here.
        chat_widgets={CHAT_WIDGET: {"workspace_id": WORKSPACE, "allowed_origins": [CHAT_ORIGIN],
                                    "identity_secret": CHAT_IDENTITY_SECRET}},
        chat_secret="chat-secret-for-the-tests-only-0123456789", chat_sessions_per_minute=10_000,
        chat_requests_per_minute=100_000, chat_poll_seconds=0.5,
        **OUTBOUND_SETTINGS,  # every outbound channel at the stand-ins of .sinks
        # Email in: the SMTP listener, and the signed webhook's sources (a throttled one).
        smtp_port=free_port(),
        smtp_inbound_addresses={"support@acme.example": WORKSPACE, "@help.acme.example": WORKSPACE,
                                "sales@other.example": "ws-ingest-other"},
        email_sources={
            "acme-parse": {"workspace_id": WORKSPACE, "secret": "acme-parse-secret-for-the-tests-only"},
            "throttled": {"workspace_id": WORKSPACE, "secret": "throttled-secret-for-the-tests-only",
                          "rate_per_second": 0.01, "burst": 1}},
    )
    ingest_app = create_ingest(ingest_settings)
    async with running_app(create_contacts(contacts_settings)) as contacts, \
            running_app(ingest_app) as ingest:
        yield Platform(ingest, contacts, ingest_app, infra, token_for(infra, WORKSPACE))

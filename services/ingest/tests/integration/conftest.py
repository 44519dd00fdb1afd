"""Ingest in-process, with contacts beside it, against MongoDB, PostgreSQL and the broker: one
platform per test module (stopped with it, so its consumers never act on later tests' events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_contacts.main import create_app as create_contacts
from crm_contacts.settings import Settings as ContactsSettings
from crm_ingest.domain.interaction import interaction_id
from crm_ingest.domain.whatsapp import sign
from crm_ingest.main import create_app as create_ingest
from crm_ingest.settings import Settings as IngestSettings
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, eventually, free_port, running_app, token_for

WORKSPACE = "ws-ingest"
WHATSAPP_PHONE_ID = "106540352242922"  # the business number mapped to WORKSPACE
WHATSAPP_SECRET = "whatsapp-app-secret-for-the-tests-only"
WHATSAPP_VERIFY_TOKEN = "verify-token-for-the-tests"


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


@pytest.fixture(scope="module")
async def platform(infra: InfraSettings) -> AsyncIterator[Platform]:
    contacts_settings = ContactsSettings(http_port=free_port(), grpc_port=free_port(), infra=infra)
    ingest_settings = IngestSettings(
        http_port=free_port(), grpc_port=free_port(), infra=infra, max_email_bytes=64 * 1024,
        contacts_grpc_target=f"127.0.0.1:{contacts_settings.grpc_port}",
        whatsapp_accounts={WHATSAPP_PHONE_ID: {"workspace_id": WORKSPACE}},
        whatsapp_app_secret=WHATSAPP_SECRET, whatsapp_verify_token=WHATSAPP_VERIFY_TOKEN,
        max_whatsapp_bytes=64 * 1024,
    )
    ingest_app = create_ingest(ingest_settings)
    async with running_app(create_contacts(contacts_settings)) as contacts, \
            running_app(ingest_app) as ingest:
        yield Platform(ingest, contacts, ingest_app, infra, token_for(infra, WORKSPACE))

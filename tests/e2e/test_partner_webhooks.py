"""A partner on the running platform, through its public doors only: a workspace opts in to
public events, a partner subscribes a webhook to deal.won and contact.erased; a deal won in
pipeline reaches the partner's receiver as one signed webhook (checked here with our own
implementation of Standard Webhooks, written from the specification); the receiver fails for a
while and then gets every event, in order; a replay of the last hour delivers them again; the
contact's erasure reaches the partner; the event catalogue is a valid AsyncAPI 3 document."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from crmkit.auth import issue_token
from crmkit.testing import eventually

from .conftest import WAIT, Platform

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WON = "crm.pipeline.deal.won.v1"
ERASED = "crm.contacts.contact.erased.v1"


@dataclass(frozen=True)
class Webhook:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def event(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found


@dataclass
class Receiver:
    """The partner's endpoint: a small HTTP/1.1 server on a loopback port that answers
    ``status`` and keeps every request."""

    status: int = 200
    seen: list[Webhook] = field(default_factory=list)
    port: int = 0

    def delivered(self, type_: str | None = None) -> list[Webhook]:
        return [w for w in self.seen if w.status == 200 and (type_ is None or w.event["type"] == type_)]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readline():
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status = self.status
                self.seen.append(Webhook(headers, body, status))
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    async with server:
        yield receiver


def signed_by(secret: str, webhook: Webhook) -> bool:
    """Standard Webhooks: HMAC-SHA256 under the base64-decoded part of ``whsec_...`` over
    ``{webhook-id}.{webhook-timestamp}.{body}``, base64, as one of the ``v1,`` signatures;
    the timestamp within five minutes."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, timestamp = webhook.headers["webhook-id"], webhook.headers["webhook-timestamp"]
    mac = hmac.new(key, msg_id.encode() + b"." + timestamp.encode() + b"." + webhook.body, hashlib.sha256)
    expected = "v1," + base64.b64encode(mac.digest()).decode()
    fresh = abs(time.time() - int(timestamp)) <= 300
    offered = webhook.headers["webhook-signature"].split()
    return fresh and any(hmac.compare_digest(expected, s) for s in offered)


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def test_a_partner_receives_signed_deal_won_and_erasure_webhooks_with_retries_and_replay(
    platform: Platform,
) -> None:
    tag = secrets.token_hex(4)
    ws = f"e2e-partners-{tag}"
    token = issue_token(platform.secret, subject="e2e-admin", workspace_id=ws, roles=["admin"])
    admin = {"Authorization": f"Bearer {token}"}
    async with receiving() as receiver, httpx.AsyncClient(headers=admin, timeout=30) as http:
        partners, pipeline, contacts = (platform.url(s) for s in ("partners", "pipeline", "contacts"))

        # The workspace opts in; a partner subscribes its endpoint to won deals and erasures.
        await ok(await http.put(f"{partners}/v1/settings", json={"enabled": True},
                                headers={"If-Match": '"0"'}))
        partner = await ok(await http.post(f"{partners}/v1/partners", json={"name": f"Acme {tag}"}), 201)
        sub = await ok(await http.post(f"{partners}/v1/partners/{partner['id']}/subscriptions", json={
            "name": "deals and erasures", "event_types": [WON, ERASED], "delivery": "webhook",
            "url": f"http://127.0.0.1:{receiver.port}/crm-events"}), 201)
        secret = sub["secret"]

        # A contact, a pipeline and a deal for the contact; the deal is won.
        contact = await ok(await http.post(f"{contacts}/v1/contacts", json={
            "first_name": "Grace", "last_name": f"Partner{tag}", "emails": [f"grace-{tag}@example.com"]}),
            201)
        await ok(await http.put(f"{pipeline}/v1/settings/currency", json={"currency": "EUR"}))
        board = await ok(await http.post(f"{pipeline}/v1/pipelines", json={
            "name": f"Partner deals {tag}", "stages": [
                {"name": "Qualified", "probability": 20}, {"name": "Won", "kind": "won"},
                {"name": "Lost", "kind": "lost"}]}), 201)
        qualified = next(s["id"] for s in board["stages"] if s["name"] == "Qualified")
        deal = await ok(await http.post(f"{pipeline}/v1/deals", json={
            "pipeline_id": board["id"], "title": f"40 seats {tag}", "currency": "EUR",
            "amount_minor": 1_250_000, "contact_id": contact["id"]}), 201)

        async def win() -> None:
            await ok(await http.post(f"{pipeline}/v1/deals/{deal['id']}/won", json={"note": "signed"}))

        async def delivered(type_: str, count: int) -> bool:
            return len(receiver.delivered(type_)) >= count

        await win()
        await eventually(lambda: delivered(WON, 1), timeout=WAIT, what="the deal.won webhook")
        [first] = receiver.seen
        assert signed_by(secret, first)
        assert first.headers["content-type"] == "application/json"
        assert first.event["type"] == WON
        assert first.event["data"]["id"] == deal["id"]
        assert first.event["data"]["pipeline_id"] == board["id"]
        assert first.headers["webhook-id"] == first.event["id"]
        assert not signed_by("whsec_" + base64.b64encode(b"not the partner's secret!").decode(), first)

        # The receiver fails for a while: the deal is reopened and won twice more meanwhile.
        receiver.status = 500
        for _ in range(2):
            await ok(await http.post(f"{pipeline}/v1/deals/{deal['id']}/stage", json={"stage_id": qualified}))
            await win()

        async def failed_twice() -> bool:
            return len([w for w in receiver.seen if w.status == 500]) >= 2

        await eventually(failed_twice, timeout=WAIT, what="failed deliveries")
        receiver.status = 200
        await eventually(lambda: delivered(WON, 3), timeout=WAIT, what="every deal.won after the recovery")
        won = receiver.delivered(WON)
        assert len(won) == 3
        assert all(signed_by(secret, w) for w in won)
        sequences = [int(w.event["sequence"]) for w in won]
        assert sequences == sorted(sequences)
        assert len({w.event["id"] for w in won}) == 3

        # A replay of the last hour delivers the three again, in order, as new messages.
        now = datetime.now(UTC)
        replay = await ok(await http.post(f"{partners}/v1/subscriptions/{sub['id']}/replay", json={
            "from_time": (now - timedelta(hours=1)).isoformat(),
            "to_time": (now + timedelta(minutes=1)).isoformat()}), 202)
        assert replay["deliveries"] == 3
        await eventually(lambda: delivered(WON, 6), timeout=WAIT, what="the replayed webhooks")
        replayed = receiver.delivered(WON)[3:]
        assert [w.event["id"] for w in replayed] == [w.event["id"] for w in won]
        new_ids = [f"{w.event['id']}.r{replay['id']}" for w in won]
        assert [w.headers["webhook-id"] for w in replayed] == new_ids
        assert all(signed_by(secret, w) for w in replayed)

        # The partner can read what happened (before the erasure, which deletes the events
        # about the person from the replay store, and their deliveries with them).
        log = await ok(await http.get(f"{partners}/v1/subscriptions/{sub['id']}/deliveries"))
        assert any(a["status_code"] == 500 for d in log["items"] for a in d["attempt_log"])

        # The person is erased in contacts: the partner is told to forget them.
        await ok(await http.post(f"{contacts}/v1/contacts/{contact['id']}/erasure"), 202)
        await eventually(lambda: delivered(ERASED, 1), timeout=WAIT, what="the contact.erased webhook")
        [erased] = receiver.delivered(ERASED)
        assert signed_by(secret, erased)
        assert erased.event["data"]["contact_id"] == contact["id"]
        assert f"Partner{tag}" not in erased.body.decode()

        # The event catalogue is a valid AsyncAPI 3 document.
        document = await ok(await http.get(f"{partners}/v1/catalogue/asyncapi.json"))
        schema = json.loads((ROOT / "docs" / "events" / "schema" / "asyncapi-3.0.0.json").read_text())
        jsonschema.Draft7Validator(schema).validate(document)
        assert document["asyncapi"].startswith("3.")

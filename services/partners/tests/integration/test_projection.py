"""The projection against the real broker and PostgreSQL: opt-in, the data policy on the public
topics, the pull API (pages, long poll, Server-Sent Events), erasure and merges."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer

from crm.contacts.v1 import contacts_pb2
from crm.contacts.v1 import events_pb2 as contacts_events
from crm.pipeline.v1 import events_pb2 as pipeline_events
from crmkit.kafka import Event, make_event
from crmkit.testing import (
    bearer,
    contact_merged_event,
    eventually,
    export_personal_data,
    free_port,
    publish,
    service_token_for,
    token_for,
)
from crmkit.topics import CONTACTS, PIPELINE, PUBLIC_CONTACTS, PUBLIC_PIPELINE

from .conftest import Partners

pytestmark = pytest.mark.integration

WON = "crm.pipeline.deal.won.v1"
ERASED = "crm.contacts.contact.erased.v1"


def _workspace() -> str:
    return f"ws-{uuid4().hex[:12]}"


def deal_won(workspace: str, deal_id: str, contact_id: str = "") -> Event:
    deal = pipeline_events.Deal(id=deal_id, workspace_id=workspace, pipeline_id="p1", stage_id="won",
                                title="Renewal for Ann Smith", owner_id="user-7", contact_id=contact_id,
                                amount_minor=150_000, currency="EUR", status=pipeline_events.DEAL_STATUS_WON)
    return make_event(topic=PIPELINE, type=WON, source="/crm/pipeline", workspace=workspace, subject=deal_id,
                      payload=pipeline_events.DealWon(deal=deal, reason="Price", note="Ann said yes",
                                                      actor="ann@example.com"))


def deal_rotting(workspace: str, deal_id: str) -> Event:
    return make_event(topic=PIPELINE, type="crm.pipeline.deal.rotting.v1", source="/crm/pipeline",
                      workspace=workspace, subject=deal_id,
                      payload=pipeline_events.DealRotting(deal_id=deal_id, workspace_id=workspace))


def contact_created(workspace: str, contact_id: str) -> Event:
    contact = contacts_pb2.Contact(id=contact_id, workspace_id=workspace, display_name="Ann Smith")
    return make_event(topic=CONTACTS, type="crm.contacts.contact.created.v1", source="/crm/contacts",
                      workspace=workspace, subject=contact_id,
                      payload=contacts_events.ContactCreated(contact=contact))


def contact_erased(workspace: str, contact_id: str) -> Event:
    return make_event(topic=CONTACTS, type=ERASED, source="/crm/contacts", workspace=workspace,
                      subject=contact_id,
                      payload=contacts_events.ContactErased(workspace_id=workspace, contact_id=contact_id))


async def opt_in(partners: Partners, workspace: str, domains: list[str] | None = None) -> None:
    response = await partners.client.put("/v1/settings", json={"enabled": True, "domains": domains or []},
                                         headers={**partners.admin(workspace), "If-Match": '"0"'})
    assert response.status_code == 200, response.text


async def feed(partners: Partners, workspace: str, **params: Any) -> dict[str, Any]:
    response = await partners.client.get("/v1/events", params=params, headers=partners.admin(workspace))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for_feed(partners: Partners, workspace: str, count: int, **params: Any
                        ) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        nonlocal found
        found = (await feed(partners, workspace, **params))["events"]
        return len(found) >= count

    await eventually(enough, what=f"{count} events in the feed")
    return found


async def public_records(infra_servers: str, topic: str, workspace: str, count: int) -> list[Any]:
    """The records of a workspace on a public topic, once there are ``count``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=infra_servers, auto_offset_reset="earliest")
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(45):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found.extend(r for r in records if dict(r.headers).get("workspace") == workspace.encode())
    finally:
        await consumer.stop()
    return found


async def test_the_settings_are_the_admins_and_need_if_match(partners: Partners) -> None:
    workspace = _workspace()
    admin = partners.admin(workspace)
    first = await partners.client.get("/v1/settings", headers=admin)
    assert first.status_code == 200
    assert first.headers["ETag"] == '"0"'
    assert first.json()["enabled"] is False
    assert "pipeline" in first.json()["available_domains"]
    body = {"enabled": True, "domains": ["pipeline"]}
    assert (await partners.client.put("/v1/settings", json=body, headers=admin)).status_code == 428
    unknown = await partners.client.put("/v1/settings", json={"enabled": True, "domains": ["secrets"]},
                                        headers={**admin, "If-Match": '"0"'})
    assert unknown.status_code == 422
    assert unknown.headers["content-type"].startswith("application/problem+json")
    written = await partners.client.put("/v1/settings", json=body, headers={**admin, "If-Match": '"0"'})
    assert written.status_code == 200
    assert written.headers["ETag"] == '"1"'
    assert written.json()["domains"] == ["pipeline"]
    stale = await partners.client.put("/v1/settings", json=body, headers={**admin, "If-Match": '"0"'})
    assert stale.status_code == 412
    sales = bearer(token_for(partners.infra, workspace, roles=("sales",)))
    assert (await partners.client.get("/v1/settings", headers=sales)).status_code == 403
    # Another workspace has its own settings.
    other = await partners.client.get("/v1/settings", headers=partners.admin(_workspace()))
    assert other.json()["enabled"] is False


async def test_an_opted_in_workspace_gets_policy_applied_public_events(partners: Partners) -> None:
    workspace, deal_id = _workspace(), str(uuid4())
    await opt_in(partners, workspace)
    # Same key: the undeclared type is handled (and skipped) before the won deal.
    await publish(partners.infra, [deal_rotting(workspace, deal_id), deal_won(workspace, deal_id)])
    (event,) = await wait_for_feed(partners, workspace, 1)
    assert event["type"] == WON
    assert event["source"] == "/crm/pipeline"
    assert event["subject"] == deal_id
    assert event["workspace"] == workspace
    assert event["sequence"]
    data = event["data"]
    assert data["id"] == deal_id
    assert data["pipeline_id"] == "p1"
    assert data["amount_minor"] == "150000"
    assert data["reason"] == "Price"
    assert len(data["owner_id"]) == 64
    assert "title" not in data
    assert "note" not in data
    assert "Ann" not in json.dumps(data)

    (record,) = await public_records(partners.infra.kafka_bootstrap_servers, PUBLIC_PIPELINE, workspace, 1)
    headers = dict(record.headers)
    assert record.key == f"{workspace}:{deal_id}".encode()
    assert headers["ce_type"] == WON.encode()
    assert headers["ce_id"] == event["id"].encode()
    assert headers["content-type"] == b"application/json"
    assert json.loads(record.value) == data

    # The cursor goes on from there: nothing after it yet.
    page = await feed(partners, workspace, types=WON)
    after = await feed(partners, workspace, after=page["next_cursor"])
    assert after["events"] == []
    assert after["next_cursor"] == page["next_cursor"]


async def test_the_pull_api_refuses_bad_cursors_and_types_and_is_scoped(partners: Partners) -> None:
    workspace = _workspace()
    await opt_in(partners, workspace)
    await publish(partners.infra, [deal_won(workspace, str(uuid4()))])
    await wait_for_feed(partners, workspace, 1)
    admin = partners.admin(workspace)
    for params in ({"after": "bm90LWEtY3Vyc29y"}, {"after": "%%%"}, {"types": "crm.nothing.v1"},
                   {"limit": "0"}, {"wait": "31"}):
        response = await partners.client.get("/v1/events", params=params, headers=admin)
        assert response.status_code == 422, params
        assert response.headers["content-type"].startswith("application/problem+json")
    # Another workspace's admin sees none of it, whatever cursor it sends.
    other = _workspace()
    assert (await feed(partners, other))["events"] == []
    assert (await feed(partners, other, types=WON))["events"] == []
    assert (await partners.client.get("/v1/events", headers={"X-API-Key": "crmpk_forged"})).status_code == 401


async def test_a_workspace_that_did_not_opt_in_publishes_nothing(partners: Partners) -> None:
    workspace = _workspace()
    event = deal_won(workspace, str(uuid4()))
    await publish(partners.infra, [event])
    conn = await asyncpg.connect(partners.dsn)
    try:
        async def claimed() -> bool:
            return bool(await conn.fetchval("SELECT 1 FROM processed_events WHERE event_id = $1",
                                            event.envelope.id))

        await eventually(claimed, what="the event to be handled")
        stored = await conn.fetchval("SELECT count(*) FROM public_events WHERE workspace_id = $1", workspace)
        assert stored == 0
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE headers::text LIKE $1",
                                   f"%{event.envelope.id}%") == 0
    finally:
        await conn.close()
    assert (await feed(partners, workspace))["events"] == []


async def test_a_long_poll_wakes_on_a_new_event(partners: Partners) -> None:
    workspace = _workspace()
    await opt_in(partners, workspace)
    start = (await feed(partners, workspace))["next_cursor"]
    waiting = asyncio.create_task(feed(partners, workspace, after=start, wait=30))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await publish(partners.infra, [deal_won(workspace, str(uuid4()))])
    page = await asyncio.wait_for(waiting, 45)
    assert [e["type"] for e in page["events"]] == [WON]


@contextlib.asynccontextmanager
async def served(partners: Partners) -> AsyncIterator[str]:
    """The running app behind a real HTTP server (Server-Sent Events need a streaming client)."""
    transport = partners.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(transport.app, host="127.0.0.1", port=port, lifespan="off",
                                           log_config=None))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: asyncio.sleep(0, server.started), what="the HTTP server")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


async def sse_events(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> list[tuple[str, Any]]:
    """The first ``count`` (id, event) of a stream."""
    found: list[tuple[str, Any]] = []
    async with asyncio.timeout(45), client.stream("GET", "/v1/events/stream", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event_id = ""
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                found.append((event_id, json.loads(line[6:])))
                if len(found) == count:
                    break
    return found


async def test_server_sent_events_resume_from_last_event_id(partners: Partners) -> None:
    workspace, deal_id = _workspace(), str(uuid4())
    await opt_in(partners, workspace)
    await publish(partners.infra, [deal_won(workspace, deal_id), deal_won(workspace, deal_id)])
    await wait_for_feed(partners, workspace, 2)
    admin = partners.admin(workspace)
    async with served(partners) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        first, second = await sse_events(client, admin, 2)
        assert first[1]["type"] == WON
        assert second[1]["id"] != first[1]["id"]
        (resumed,) = await sse_events(client, {**admin, "Last-Event-ID": first[0]}, 1)
        assert resumed[1]["id"] == second[1]["id"]
        forged = await client.get("/v1/events/stream", headers={**admin, "Last-Event-ID": "forged"})
        assert forged.status_code == 422


async def test_an_erasure_removes_the_persons_events_and_reaches_every_topic(partners: Partners) -> None:
    workspace, survivor, loser, other = _workspace(), str(uuid4()), str(uuid4()), str(uuid4())
    await opt_in(partners, workspace, ["contacts", "pipeline"])
    await publish(partners.infra, [contact_created(workspace, survivor), contact_created(workspace, loser),
                                   contact_created(workspace, other)])
    await publish(partners.infra, [deal_won(workspace, str(uuid4()), contact_id=loser)])
    await wait_for_feed(partners, workspace, 4)
    token = service_token_for(partners.infra, workspace)
    part = await export_personal_data(partners.settings.grpc_port, token, [loser])
    exported = json.loads(part.json)["public_events"]
    assert {e["type"] for e in exported} == {"crm.contacts.contact.created.v1", WON}

    # The loser's events become the survivor's; erasing the survivor takes them all.
    await publish(partners.infra, [contact_merged_event(workspace, loser, survivor)])
    await wait_for_feed(partners, workspace, 5)
    await publish(partners.infra, [contact_erased(workspace, survivor)])
    erasures = await wait_for_feed(partners, workspace, 1, types=ERASED)
    assert erasures[0]["data"]["contact_id"] == survivor
    assert erasures[0]["data"]["erased_at"]
    left = (await feed(partners, workspace))["events"]
    # The merge named the survivor too: it went with the rest.
    assert {e["type"] for e in left} == {"crm.contacts.contact.created.v1", ERASED}
    assert [e["data"]["id"] for e in left if e["type"] == "crm.contacts.contact.created.v1"] == [other]

    for topic in (PUBLIC_CONTACTS, PUBLIC_PIPELINE):
        records = await public_records(partners.infra.kafka_bootstrap_servers, topic, workspace,
                                       5 if topic == PUBLIC_CONTACTS else 2)
        erased = [r for r in records if dict(r.headers)["ce_type"] == ERASED.encode()]
        assert len(erased) == 1
        assert erased[0].key == f"{workspace}:{survivor}".encode()
    conn = await asyncpg.connect(partners.dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pending_erasure_confirmations"
                                   " WHERE workspace_id = $1 AND contact_id = $2", workspace, survivor) == 1
    finally:
        await conn.close()


async def test_an_erasure_is_confirmed_for_a_workspace_that_did_not_opt_in(partners: Partners) -> None:
    workspace, contact_id = _workspace(), str(uuid4())
    await publish(partners.infra, [contact_erased(workspace, contact_id)])
    conn = await asyncpg.connect(partners.dsn)
    try:
        async def queued() -> bool:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM pending_erasure_confirmations"
                " WHERE workspace_id = $1 AND contact_id = $2", workspace, contact_id))

        await eventually(queued, what="the erasure confirmation to be queued")
        stored = await conn.fetchval("SELECT count(*) FROM public_events WHERE workspace_id = $1", workspace)
        assert stored == 0
    finally:
        await conn.close()


def deal_lost(workspace: str, deal_id: str) -> Event:
    deal = pipeline_events.Deal(id=deal_id, workspace_id=workspace, pipeline_id="p1",
                                status=pipeline_events.DEAL_STATUS_LOST)
    return make_event(topic=PIPELINE, type="crm.pipeline.deal.lost.v1", source="/crm/pipeline",
                      workspace=workspace, subject=deal_id, payload=pipeline_events.DealLost(deal=deal))


async def partner_key(partners: Partners, workspace: str, event_types: list[str]) -> dict[str, str]:
    """A new partner's API key (events:read) with a pull subscription to ``event_types``."""
    admin = partners.admin(workspace)
    partner = await partners.client.post("/v1/partners", json={"name": f"p-{uuid4().hex[:6]}"}, headers=admin)
    assert partner.status_code == 201, partner.text
    base = f"/v1/partners/{partner.json()['id']}"
    key = await partners.client.post(f"{base}/keys", json={"scopes": ["events:read"]}, headers=admin)
    assert key.status_code == 201, key.text
    subscription = await partners.client.post(f"{base}/subscriptions", headers=admin, json={
        "name": "feed", "event_types": event_types, "delivery": "pull"})
    assert subscription.status_code == 201, subscription.text
    return {"X-API-Key": key.json()["key"]}


async def test_a_partner_reads_only_the_types_it_subscribed_to_in_its_workspace(partners: Partners) -> None:
    workspace, deal_id = _workspace(), str(uuid4())
    await opt_in(partners, workspace)
    mine = await partner_key(partners, workspace, [WON])
    await publish(partners.infra, [deal_lost(workspace, deal_id), deal_won(workspace, deal_id)])
    assert len(await wait_for_feed(partners, workspace, 2)) == 2  # an admin reads both

    async def partner_feed(headers: dict[str, str], **params: Any) -> list[str]:
        response = await partners.client.get("/v1/events", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [e["type"] for e in response.json()["events"]]

    assert await partner_feed(mine) == [WON]
    assert await partner_feed(mine, types="crm.pipeline.deal.lost.v1") == []
    # A partner of another workspace, subscribed to the same type, sees none of it.
    other = _workspace()
    await opt_in(partners, other)
    assert await partner_feed(await partner_key(partners, other, [WON])) == []


async def test_retention_deletes_only_events_older_than_the_replay_window(partners: Partners) -> None:
    workspace = _workspace()
    await opt_in(partners, workspace)
    await publish(partners.infra, [deal_won(workspace, str(uuid4())), deal_won(workspace, str(uuid4()))])
    old, recent = await wait_for_feed(partners, workspace, 2)
    conn = await asyncpg.connect(partners.dsn)
    try:
        await conn.execute("UPDATE public_events SET recorded_at = now() - make_interval(days => $2)"
                           " WHERE workspace_id = $1 AND id = $3",
                           workspace, partners.settings.replay_retention_days + 1, old["id"])
    finally:
        await conn.close()
    transport = partners.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    assert await transport.app.state.projection.purge_expired() >= 1  # type: ignore[attr-defined]
    assert [e["id"] for e in (await feed(partners, workspace))["events"]] == [recent["id"]]

"""Signed webhook delivery against the real PostgreSQL and a local HTTP receiver: signatures
(checked by an implementation of Standard Webhooks written here, from the spec), per-key order
through failures, 410, slow endpoints, replays, secret rotation, the DLQ, SSRF at send time and
workspace isolation."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from crm_partners.domain.model import PublicEvent
from crm_partners.main import create_app
from crm_partners.service.deliveries import Deliveries
from crm_partners.settings import Settings
from crm_partners.store.events import EventsStore
from crmkit.postgres import PgDatabase
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, eventually, free_port, running_app, token_for

from ._receiver import Receiver, Request

pytestmark = pytest.mark.integration

WON = "crm.pipeline.deal.won.v1"
ERASED = "crm.contacts.contact.erased.v1"


@dataclass
class Hooks:
    client: httpx.AsyncClient
    app: FastAPI
    infra: InfraSettings
    settings: Settings

    def admin(self, workspace_id: str) -> dict[str, str]:
        return bearer(token_for(self.infra, workspace_id, roles=("admin",), subject="admin"))

    @property
    def db(self) -> PgDatabase:
        db: PgDatabase = self.app.state.db
        return db

    @property
    def deliveries(self) -> Deliveries:
        deliveries: Deliveries = self.app.state.deliveries
        return deliveries


@pytest.fixture(scope="module")
async def hooks(infra: InfraSettings) -> AsyncIterator[Hooks]:
    """The partners app with a short retry window (12 s) and quick retries, so that a dead
    delivery and a recovering receiver both fit in a test."""
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra,
                        contacts_grpc_target=f"127.0.0.1:{free_port()}", webhook_allow_loopback=True,
                        webhook_poll_seconds=0.1, webhook_retry_hours=12 / 3600, webhook_timeout_seconds=3,
                        webhook_backoff_base_seconds=0.2, webhook_backoff_cap_seconds=1.0,
                        webhook_per_endpoint=2)
    app = create_app(settings)
    async with running_app(app) as client:
        yield Hooks(client, app, infra, settings)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as found:
        yield found


# --- Standard Webhooks, as a partner would write it from the specification ---

def verify_standard_webhook(secret: str, request: Request) -> None:
    """Base64-decode the part after ``whsec_``, HMAC-SHA256 ``{id}.{timestamp}.{body}`` with
    it, base64 the digest, and expect it among the space-separated ``v1,`` signatures."""
    key = base64.b64decode(secret.split("_", 1)[1])
    msg_id, timestamp = request.headers["webhook-id"], request.headers["webhook-timestamp"]
    assert abs(time.time() - int(timestamp)) < 300
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + request.body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    assert expected in request.headers["webhook-signature"].split(" ")


# --- setting things up through the API, and events through the replay store ---

def workspace() -> str:
    return f"ws-{secrets.token_hex(6)}"


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def partner(hooks: Hooks, ws: str) -> str:
    created = await ok(await hooks.client.post("/v1/partners", json={"name": f"p-{secrets.token_hex(3)}"},
                                               headers=hooks.admin(ws)), 201)
    return str(created["id"])


async def subscribe(hooks: Hooks, ws: str, url: str, partner_id: str | None = None,
                    event_types: tuple[str, ...] = (WON, ERASED), **extra: Any) -> dict[str, Any]:
    partner_id = partner_id or await partner(hooks, ws)
    body = {"name": "hook", "event_types": list(event_types), "delivery": "webhook", "url": url, **extra}
    response = await hooks.client.post(f"/v1/partners/{partner_id}/subscriptions", json=body,
                                       headers=hooks.admin(ws))
    sub: dict[str, Any] = await ok(response, 201)
    assert sub["secret"].startswith("whsec_")
    return sub


def event(ws: str, key: str, n: int, type_: str = WON, **data: Any) -> PublicEvent:
    return PublicEvent(id=f"evt-{secrets.token_hex(6)}", workspace_id=ws, topic="crm.public.pipeline.v1",
                       type=type_, source="/crm/pipeline", subject=key, key=f"{ws}:{key}",
                       time=datetime.now(UTC), data={"deal_id": key, "n": n, "pipeline_id": "p1", **data})


async def publish(hooks: Hooks, events: list[PublicEvent]) -> list[PublicEvent]:
    """What the projection does: store the events and fan them out in one transaction."""
    async with hooks.db.unit_of_work() as uow:
        stored = await EventsStore(uow.conn).insert(events)
        await hooks.deliveries.enqueue(uow, stored)
    hooks.deliveries.wake()
    return stored


async def deliveries(hooks: Hooks, ws: str, sub_id: str, **params: str) -> list[dict[str, Any]]:
    page = await ok(await hooks.client.get(f"/v1/subscriptions/{sub_id}/deliveries", params=params,
                                           headers=hooks.admin(ws)))
    items: list[dict[str, Any]] = page["items"]
    return items


async def until_received(receiver: Receiver, path: str, count: int, what: str) -> list[Request]:
    async def done() -> bool:
        return len(receiver.at(path)) >= count

    await eventually(done, timeout=60, what=what)
    return receiver.at(path)


def order(requests: list[Request]) -> list[int]:
    return [json.loads(r.body)["data"]["n"] for r in requests]


# --- the tests ---

async def test_a_delivery_is_one_correctly_signed_cloudevent(hooks: Hooks, receiver: Receiver) -> None:
    ws = workspace()
    sub = await subscribe(hooks, ws, receiver.url("/a"))
    other = await subscribe(hooks, workspace(), receiver.url("/elsewhere"))
    [stored] = await publish(hooks, [event(ws, "d1", 1)])

    [request] = await until_received(receiver, "/a", 1, "the webhook")
    verify_standard_webhook(sub["secret"], request)
    assert request.headers["webhook-id"] == stored.id
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.body)
    assert body == {**stored.cloudevent(), "time": body["time"]}
    assert (body["id"], body["type"], body["sequence"]) == (stored.id, WON, str(stored.seq))
    # A secret of another subscription does not verify it.
    with pytest.raises(AssertionError):
        verify_standard_webhook(other["secret"], request)

    async def logged() -> bool:
        return (await deliveries(hooks, ws, sub["id"]))[0]["status"] == "delivered"

    await eventually(logged, what="the delivery log")
    [logged_delivery] = await deliveries(hooks, ws, sub["id"])
    assert logged_delivery["message_id"] == stored.id
    assert logged_delivery["event_type"] == WON
    [attempt] = logged_delivery["attempt_log"]
    assert attempt["status_code"] == 200
    assert attempt["latency_ms"] >= 0
    assert attempt["error"] is None
    one = await ok(await hooks.client.get(f"/v1/deliveries/{logged_delivery['id']}", headers=hooks.admin(ws)))
    assert one["id"] == logged_delivery["id"]
    # Nothing went to the other workspace's subscription.
    assert receiver.at("/elsewhere", None) == []


async def test_a_failing_receiver_gets_every_event_in_order_per_key_once_it_recovers(
        hooks: Hooks, receiver: Receiver) -> None:
    ws = workspace()
    sub = await subscribe(hooks, ws, receiver.url("/flaky"))
    receiver.statuses["/flaky"] = 500
    await publish(hooks, [event(ws, "deal-a", n) for n in range(5)])
    await publish(hooks, [event(ws, "deal-b", n) for n in range(5, 8)])

    async def failed_several_times() -> bool:
        return len(receiver.at("/flaky", 500)) >= 4

    await eventually(failed_several_times, what="failed attempts")
    receiver.statuses["/flaky"] = 200
    received = await until_received(receiver, "/flaky", 8, "every event after the recovery")
    assert len(received) == 8
    by_key = {k: [n for n, r in zip(order(received), received, strict=True) if r.body.count(k.encode())]
              for k in ("deal-a", "deal-b")}
    assert by_key == {"deal-a": [0, 1, 2, 3, 4], "deal-b": [5, 6, 7]}
    # Retries keep the message id; only the first event of each key was ever attempted before
    # the recovery, because the later ones waited behind it.
    failed_ids = {r.headers["webhook-id"] for r in receiver.at("/flaky", 500)}
    first_ids = {received[order(received).index(0)].headers["webhook-id"],
                 received[order(received).index(5)].headers["webhook-id"]}
    assert failed_ids <= first_ids

    async def all_delivered() -> bool:
        return {d["status"] for d in await deliveries(hooks, ws, sub["id"])} == {"delivered"}

    await eventually(all_delivered, what="every delivery recorded as delivered")
    log = await deliveries(hooks, ws, sub["id"])
    assert any(a["status_code"] == 500 and a["error"] == "HTTP 500" for d in log for a in d["attempt_log"])


async def test_410_disables_the_subscription_until_it_is_enabled_again(hooks: Hooks,
                                                                        receiver: Receiver) -> None:
    ws = workspace()
    sub = await subscribe(hooks, ws, receiver.url("/gone"))
    receiver.statuses["/gone"] = 410
    await publish(hooks, [event(ws, "d1", 1), event(ws, "d1", 2)])

    async def disabled() -> bool:
        found = await ok(await hooks.client.get(f"/v1/subscriptions/{sub['id']}", headers=hooks.admin(ws)))
        return bool(found["status"] == "disabled")

    await eventually(disabled, what="the subscription to be disabled")
    found = await ok(await hooks.client.get(f"/v1/subscriptions/{sub['id']}", headers=hooks.admin(ws)))
    assert "410" in found["disabled_reason"]
    assert {d["status"] for d in await deliveries(hooks, ws, sub["id"])} == {"pending"}
    assert len(receiver.at("/gone", None)) == 1

    receiver.statuses["/gone"] = 200
    await ok(await hooks.client.post(f"/v1/subscriptions/{sub['id']}/enable", headers=hooks.admin(ws)), 204)
    received = await until_received(receiver, "/gone", 2, "the deliveries after enabling")
    assert order(received) == [1, 2]


async def test_a_slow_endpoint_never_holds_up_another(hooks: Hooks, receiver: Receiver) -> None:
    ws = workspace()
    await subscribe(hooks, ws, receiver.url("/slow"))
    await subscribe(hooks, ws, receiver.url("/fast"))
    receiver.gates["/slow"] = gate = asyncio.Event()
    # Twenty keys: the slow endpoint could take twenty requests at once, but gets its two.
    await publish(hooks, [event(ws, f"deal-{n}", n) for n in range(20)])
    received = await until_received(receiver, "/fast", 20, "the fast endpoint's events")
    assert sorted(order(received)) == list(range(20))
    assert receiver.at("/slow", None) == []
    gate.set()
    await until_received(receiver, "/slow", 20, "the slow endpoint's events")


async def test_replays_by_time_range_and_after_an_event_deliver_again_as_new_messages(
        hooks: Hooks, receiver: Receiver) -> None:
    ws = workspace()
    sub = await subscribe(hooks, ws, receiver.url("/r"))
    stored = await publish(hooks, [event(ws, "d1", n) for n in range(3)])
    await until_received(receiver, "/r", 3, "the first deliveries")
    url = f"/v1/subscriptions/{sub['id']}/replay"
    now = datetime.now(UTC)
    last_hour = {"from_time": (now - timedelta(hours=1)).isoformat(),
                 "to_time": (now + timedelta(minutes=1)).isoformat()}

    replay = await ok(await hooks.client.post(url, headers=hooks.admin(ws), json=last_hour), 202)
    assert replay["deliveries"] == 3
    again = (await until_received(receiver, "/r", 6, "the replayed events"))[3:]
    assert order(again) == [0, 1, 2]
    assert [r.headers["webhook-id"] for r in again] == [f"{e.id}.r{replay['id']}" for e in stored]
    for request in again:
        verify_standard_webhook(sub["secret"], request)

    after_first = {"after_event_id": stored[0].id}
    after = await ok(await hooks.client.post(url, headers=hooks.admin(ws), json=after_first), 202)
    assert after["deliveries"] == 2
    assert order((await until_received(receiver, "/r", 8, "the replay after an event"))[6:]) == [1, 2]

    for bad in ({"from_time": now.isoformat(), "to_time": (now - timedelta(seconds=1)).isoformat()},
                {"from_time": "2026-01-01T00:00:00", "to_time": "2026-01-02T00:00:00"},
                {"from_time": now.isoformat()},
                {"after_event_id": "no-such-event"},
                {"after_event_id": stored[0].id, "from_time": now.isoformat(), "to_time": now.isoformat()},
                {"from_time": "yesterday", "to_time": "today"},
                {}):
        response = await hooks.client.post(url, headers=hooks.admin(ws), json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_rotated_secret_signs_beside_the_old_one_during_the_grace(hooks: Hooks,
                                                                          receiver: Receiver) -> None:
    ws = workspace()
    sub = await subscribe(hooks, ws, receiver.url("/rot"))
    rotated = await ok(await hooks.client.post(f"/v1/subscriptions/{sub['id']}/secrets/rotate",
                                               headers=hooks.admin(ws), json={"grace_seconds": 3600}), 201)
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != sub["secret"]
    await publish(hooks, [event(ws, "d1", 1)])
    [request] = await until_received(receiver, "/rot", 1, "a webhook during the rotation")
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    verify_standard_webhook(sub["secret"], request)
    verify_standard_webhook(rotated["secret"], request)

    final = await ok(await hooks.client.post(f"/v1/subscriptions/{sub['id']}/secrets/rotate",
                                             headers=hooks.admin(ws), json={"grace_seconds": 0}), 201)
    await publish(hooks, [event(ws, "d1", 2)])
    [_, request] = await until_received(receiver, "/rot", 2, "a webhook after the rotation")
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    verify_standard_webhook(final["secret"], request)
    with pytest.raises(AssertionError):
        verify_standard_webhook(rotated["secret"], request)
    too_long = await hooks.client.post(f"/v1/subscriptions/{sub['id']}/secrets/rotate",
                                       headers=hooks.admin(ws), json={"grace_seconds": 10**9})
    assert too_long.status_code == 422


async def test_a_delivery_failing_past_the_retry_window_is_dead_and_can_be_retried(
        hooks: Hooks, receiver: Receiver) -> None:
    ws = workspace()
    sub = await subscribe(hooks, ws, receiver.url("/down"))
    receiver.statuses["/down"] = 503
    await publish(hooks, [event(ws, "d1", 1)])
    dlq = f"/v1/subscriptions/{sub['id']}/dlq"

    async def dead() -> bool:
        return bool((await ok(await hooks.client.get(dlq, headers=hooks.admin(ws))))["items"])

    await eventually(dead, timeout=60, what="the delivery to be dead")
    [item] = (await ok(await hooks.client.get(dlq, headers=hooks.admin(ws))))["items"]
    assert item["status"] == "dead"
    assert item["last_status_code"] == 503
    assert item["attempts"] >= 2
    assert item["next_attempt_at"] is None

    receiver.statuses["/down"] = 200
    requeued = await ok(await hooks.client.post(f"{dlq}/retry", headers=hooks.admin(ws)))
    assert requeued == {"requeued": 1}
    await until_received(receiver, "/down", 1, "the retried dead delivery")
    pending = await hooks.client.post(f"/v1/deliveries/{item['id']}/retry", headers=hooks.admin(ws))

    async def delivered() -> bool:
        one = await ok(await hooks.client.get(f"/v1/deliveries/{item['id']}", headers=hooks.admin(ws)))
        return bool(one["status"] == "delivered")

    await eventually(delivered, what="the delivery to be delivered")
    assert pending.status_code in (200, 409)
    again = await ok(await hooks.client.post(f"/v1/deliveries/{item['id']}/retry", headers=hooks.admin(ws)))
    assert again["status"] == "pending"
    received = await until_received(receiver, "/down", 2, "the manual retry")
    assert received[0].headers["webhook-id"] == received[1].headers["webhook-id"]


async def test_an_internal_address_is_refused_at_send_time(hooks: Hooks, receiver: Receiver) -> None:
    ws = workspace()
    refused = await hooks.client.post(f"/v1/partners/{await partner(hooks, ws)}/subscriptions",
                                      headers=hooks.admin(ws), json={
                                          "name": "h", "event_types": [WON], "delivery": "webhook",
                                          "url": "http://10.1.2.3/hook"})
    assert refused.status_code == 422
    # A URL that passed its check but points inside now (a re-pointed host) is not called.
    sub = await subscribe(hooks, ws, receiver.url("/x"))
    conn = await asyncpg.connect(hooks.infra.postgres_dsn_for(hooks.settings.database_name))
    try:
        await conn.execute("UPDATE subscriptions SET url = 'http://169.254.169.254/latest' WHERE id = $1",
                           sub["id"])
    finally:
        await conn.close()
    await publish(hooks, [event(ws, "d1", 1)])

    async def refused_attempt() -> bool:
        log = await deliveries(hooks, ws, sub["id"])
        return bool(log and log[0]["attempt_log"])

    await eventually(refused_attempt, what="a refused attempt")
    attempt = (await deliveries(hooks, ws, sub["id"]))[0]["attempt_log"][0]
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("refused")


async def test_nobody_reaches_another_workspaces_or_partners_deliveries(hooks: Hooks,
                                                                         receiver: Receiver) -> None:
    ws, other_ws = workspace(), workspace()
    mine, theirs = await partner(hooks, ws), await partner(hooks, ws)
    sub = await subscribe(hooks, ws, receiver.url("/iso"), partner_id=mine)
    await publish(hooks, [event(ws, "d1", 1)])
    [request] = await until_received(receiver, "/iso", 1, "the webhook")
    [delivery] = await deliveries(hooks, ws, sub["id"])

    def key(partner_id: str) -> Any:
        return hooks.client.post(f"/v1/partners/{partner_id}/keys", headers=hooks.admin(ws), json={
            "name": "k", "scopes": ["events:read", "subscriptions:write", "deliveries:replay"]})

    my_key = {"X-API-Key": (await ok(await key(mine), 201))["key"]}
    their_key = {"X-API-Key": (await ok(await key(theirs), 201))["key"]}
    now = datetime.now(UTC)
    window = {"from_time": (now - timedelta(hours=1)).isoformat(),
              "to_time": (now + timedelta(hours=1)).isoformat()}
    calls = [
        ("GET", f"/v1/subscriptions/{sub['id']}/deliveries", None),
        ("GET", f"/v1/subscriptions/{sub['id']}/dlq", None),
        ("POST", f"/v1/subscriptions/{sub['id']}/dlq/retry", None),
        ("GET", f"/v1/deliveries/{delivery['id']}", None),
        ("POST", f"/v1/deliveries/{delivery['id']}/retry", None),
        ("POST", f"/v1/subscriptions/{sub['id']}/replay", window),
        ("POST", f"/v1/subscriptions/{sub['id']}/secrets/rotate", None),
        ("POST", f"/v1/subscriptions/{sub['id']}/enable", None),
    ]
    for method, path, body in calls:
        for outsider in (hooks.admin(other_ws), their_key):
            response = await hooks.client.request(method, path, headers=outsider, json=body)
            assert response.status_code == 404, (method, path, response.text)
    # The partner itself reads its own log and replays its own events, which stay in its workspace.
    own_log = await ok(await hooks.client.get(f"/v1/subscriptions/{sub['id']}/deliveries", headers=my_key))
    assert own_log["items"]
    replay = await ok(await hooks.client.post(f"/v1/subscriptions/{sub['id']}/replay", headers=my_key,
                                              json=window), 202)
    assert replay["deliveries"] == 1
    assert (await hooks.client.get("/v1/deliveries/99999999999999999999", headers=my_key)).status_code == 422
    assert (await hooks.client.get(f"/v1/subscriptions/{sub['id']}/deliveries?status=nope",
                                   headers=my_key)).status_code == 422
    assert (await hooks.client.get(f"/v1/subscriptions/{sub['id']}/deliveries?cursor=forged",
                                   headers=my_key)).status_code == 422
    assert request.headers["webhook-id"] == delivery["event_id"]

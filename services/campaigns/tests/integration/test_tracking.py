"""Tracking, unsubscribe, conversions and reports: real MongoDB and broker.

Sends are seeded straight into ``sends`` (the shape the send engine writes), so these tests do
not need contacts running beside them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from crm.campaigns.v1 import events_pb2
from crm.common.v1 import common_pb2
from crm.ingest.v1 import events_pb2 as ingest_events
from crm.ingest.v1 import interaction_pb2
from crm.pipeline.v1 import events_pb2 as pipeline_events
from crm_campaigns.domain.tracking import click_url, open_url, tracked_content, unsubscribe_url
from crm_campaigns.main import create_app
from crm_campaigns.settings import Settings
from crm_campaigns.store.campaigns import address_hash
from crmkit.ids import uuid7
from crmkit.kafka import Envelope, make_event
from crmkit.mongo import Document, create_client
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, eventually, free_port, publish, running_app, token_for
from crmkit.topics import CAMPAIGNS, INTERACTIONS, PIPELINE

pytestmark = pytest.mark.integration

HUMAN = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko)"
BASE = "http://campaigns.test"


@dataclass
class App:
    client: httpx.AsyncClient
    settings: Settings
    db: Any

    def url(self, make: Any, workspace_id: str, send_id: str, *args: str) -> str:
        full = make(*args, base_url=BASE, secret=self.settings.tracking_key, workspace_id=workspace_id,
                    send_id=send_id)
        return str(full).removeprefix(BASE)


@pytest.fixture(scope="module")
async def app(infra: InfraSettings) -> AsyncIterator[App]:
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra, bot_open_seconds=30,
                        conversion_window_days=7)
    client = create_client(infra.mongo_uri)
    try:
        async with running_app(create_app(settings)) as http:
            yield App(http, settings, client[settings.database_name])
    finally:
        await client.close()


async def seed(app: App, workspace_id: str, campaign_id: str, sends: list[dict[str, Any]]) -> list[Document]:
    now = datetime.now(UTC)
    # A partial campaign document (no template): "sent", so that no sender of the run (they
    # share the database) picks it up as due and fails on it.
    await app.db.campaigns.update_one({"_id": campaign_id},
                                      {"$setOnInsert": {"workspace_id": workspace_id, "name": "Autumn",
                                                        "status": "sent", "created_at": now}},
                                      upsert=True)
    docs = [{"_id": str(uuid7()), "workspace_id": workspace_id, "campaign_id": campaign_id, "variant": "",
             "contact_id": str(uuid7()), "address": f"{uuid7()}@example.com", "status": "delivered",
             "created_at": now - timedelta(hours=2), "sent_at": now - timedelta(hours=1), **s} for s in sends]
    await app.db.sends.insert_many(docs)
    return docs


async def send_doc(app: App, send_id: str) -> Document:
    found: Document | None = await app.db.sends.find_one({"_id": send_id})
    assert found is not None
    return found


async def events_on_campaigns(infra: InfraSettings) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(CAMPAIGNS, bootstrap_servers=infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    return consumer


async def wait_for(consumer: AIOKafkaConsumer, event_type: str, key: str) -> list[Envelope]:
    """Every ``event_type`` event keyed ``key`` seen until the first one (and a moment after)."""
    found: list[Envelope] = []
    async with asyncio.timeout(30):
        while not found:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    envelope = Envelope.from_record(record.headers, record.value)
                    if record.key == key.encode() and envelope.type == event_type:
                        found.append(envelope)
    for records in (await consumer.getmany(timeout_ms=1500)).values():
        for record in records:
            envelope = Envelope.from_record(record.headers, record.value)
            if record.key == key.encode() and envelope.type == event_type:
                found.append(envelope)
    return found


async def unsubscribed_once(infra: InfraSettings, ws: str, send: Document,
                            act: Callable[[], Awaitable[object]]) -> events_pb2.RecipientUnsubscribed:
    """The one RecipientUnsubscribed of the send's contact that ``act`` leads to (exactly one)."""
    consumer = await events_on_campaigns(infra)
    try:
        await act()
        unsubscribed = await wait_for(consumer, "crm.campaigns.recipient.unsubscribed.v1",
                                      f"{ws}:{send['contact_id']}")
    finally:
        await consumer.stop()
    assert len(unsubscribed) == 1
    event = unsubscribed[0].parse(events_pb2.RecipientUnsubscribed)
    assert isinstance(event, events_pb2.RecipientUnsubscribed)
    return event


async def suppression_reason(app: App, ws: str, address: str) -> str:
    suppressed = await app.db.suppression.find_one({"workspace_id": ws, "hash": address_hash(address)})
    assert suppressed is not None
    return str(suppressed["reason"])


async def test_the_open_pixel_counts_people_and_flags_bots(app: App, infra: InfraSettings) -> None:
    ws, campaign = f"ws-{uuid7()}", str(uuid7())
    [send, fresh] = await seed(app, ws, campaign, [{}, {"sent_at": datetime.now(UTC)}])
    pixel = app.url(open_url, ws, send["_id"])
    consumer = await events_on_campaigns(infra)
    try:
        for agent in (HUMAN, HUMAN):
            response = await app.client.get(pixel, headers={"user-agent": agent})
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/gif"
            assert response.content.startswith(b"GIF89a")
            assert "no-store" in response.headers["cache-control"]
        assert (await app.client.head(pixel, headers={"user-agent": HUMAN})).status_code == 200
        for agent in ("Mozilla/5.0", "Mozilla/5.0 (compatible; GoogleImageProxy)"):
            assert (await app.client.get(pixel, headers={"user-agent": agent})).status_code == 200
        # Within seconds of the send: a prefetch.
        assert (await app.client.get(app.url(open_url, ws, fresh["_id"]),
                                     headers={"user-agent": HUMAN})).status_code == 200
        # Not our signature: still a GIF, nothing recorded.
        forged = pixel.replace(".gif", "x.gif")
        bad = await app.client.get(forged, headers={"user-agent": HUMAN})
        assert bad.status_code == 200
        assert bad.content.startswith(b"GIF89a")
        opened = await wait_for(consumer, "crm.campaigns.message.opened.v1", f"{ws}:{send['contact_id']}")
    finally:
        await consumer.stop()
    doc = await send_doc(app, send["_id"])
    assert (doc["open_count"], doc["bot_open_count"]) == (2, 3)
    assert doc["first_opened_at"] <= doc["last_opened_at"]
    fresh_doc = await send_doc(app, fresh["_id"])
    assert (fresh_doc.get("open_count", 0), fresh_doc["bot_open_count"]) == (0, 1)
    assert len(opened) == 2  # the human opens only
    message = opened[0].parse(events_pb2.MessageOpened)
    assert isinstance(message, events_pb2.MessageOpened)
    assert (message.campaign_id, message.message_id, message.contact_id) == (campaign, send["_id"],
                                                                            send["contact_id"])
    assert await app.db.engagements.count_documents({"send_id": send["_id"]}) == 5


async def test_clicks_redirect_only_to_signed_targets(app: App, infra: InfraSettings) -> None:
    ws, campaign = f"ws-{uuid7()}", str(uuid7())
    [send] = await seed(app, ws, campaign, [{}])
    html, _ = tracked_content('<p><a href="https://shop.example.com/deal?id=7&amp;x=1">Buy</a></p>', "",
                              base_url=BASE, secret=app.settings.tracking_key, workspace_id=ws,
                              send_id=send["_id"])
    link = re.search(r'href="([^"]+)"', html)
    assert link
    path = link.group(1).removeprefix(BASE)
    response = await app.client.get(path, headers={"user-agent": HUMAN})
    assert response.status_code == 302
    assert response.headers["location"] == "https://shop.example.com/deal?id=7&x=1"
    token = path.rsplit("/", 1)[1]
    payload, _, mac = token.partition(".")
    other = app.url(click_url, ws, send["_id"], "https://evil.example.com").rsplit("/", 1)[1]
    for bad in (f"{other.partition('.')[0]}.{mac}", f"{payload}.{mac[:-2]}AA", f"{payload}x.{mac}",
                app.url(open_url, ws, send["_id"]).rsplit("/", 1)[1].removesuffix(".gif")):
        refused = await app.client.get(f"/v1/t/c/{bad}", headers={"user-agent": HUMAN})
        assert refused.status_code == 404
        assert "location" not in refused.headers
        assert refused.headers["content-type"].startswith("application/problem+json")
    doc = await send_doc(app, send["_id"])
    assert doc["click_count"] == 1
    assert doc["first_clicked_at"] == doc["last_clicked_at"]


async def test_one_click_unsubscribe_suppresses_and_tells_contacts(app: App, infra: InfraSettings) -> None:
    ws, campaign = f"ws-{uuid7()}", str(uuid7())
    [send] = await seed(app, ws, campaign, [{"address": f"Someone.{uuid7()}@Example.com"}])
    path = app.url(unsubscribe_url, ws, send["_id"])
    page = await app.client.get(path)
    assert page.status_code == 200
    assert '<form method="post"' in page.text
    assert (await send_doc(app, send["_id"])).get("unsubscribed_at") is None  # a GET changes nothing
    assert (await app.client.get(path[:-3] + "abc")).status_code == 404

    async def post_twice() -> None:
        for _ in range(2):  # a mail client may POST more than once
            done = await app.client.post(path, content=b"List-Unsubscribe=One-Click",
                                         headers={"content-type": "application/x-www-form-urlencoded"})
            assert done.status_code == 200

    event = await unsubscribed_once(infra, ws, send, post_twice)
    assert (event.workspace_id, event.contact_id, event.channel, event.purpose, event.campaign_id,
            event.method) == (ws, send["contact_id"], "email", "marketing", campaign, "one_click")
    assert await suppression_reason(app, ws, send["address"]) == "unsubscribed"
    assert (await send_doc(app, send["_id"]))["unsubscribe_method"] == "one_click"
    forged = await app.client.post(path[:-3] + "abc", content=b"List-Unsubscribe=One-Click")
    assert forged.status_code == 404


def complaint(ws: str, send: Document) -> Any:
    """Ingest's DeliveryUpdated for an abuse report (a feedback loop's ARF) on a campaign message."""
    payload = ingest_events.DeliveryUpdated(
        interaction_id=str(uuid7()), contact_id=send["contact_id"], channel="CHANNEL_EMAIL",
        status="complained", outbound_id=send["_id"], origin="campaigns", reference=send["_id"])
    payload.at.FromDatetime(datetime.now(UTC))
    return make_event(topic=INTERACTIONS, type="crm.interactions.delivery.updated.v1", source="/crm/ingest",
                      workspace=ws, subject=send["contact_id"], payload=payload)


async def test_a_spam_complaint_unsubscribes_and_suppresses_as_complained(app: App,
                                                                          infra: InfraSettings) -> None:
    ws, campaign = f"ws-{uuid7()}", str(uuid7())
    [send] = await seed(app, ws, campaign, [{}])
    event = await unsubscribed_once(infra, ws, send, lambda: publish(  # two reports of one message
        infra, [complaint(ws, send), complaint(ws, send)]))
    assert (event.contact_id, event.purpose, event.campaign_id, event.method) == (
        send["contact_id"], "marketing", campaign, "complaint")  # contacts withdraws the consent
    assert await suppression_reason(app, ws, send["address"]) == "complained"
    after = await send_doc(app, send["_id"])
    assert (after["status"], after["unsubscribe_method"]) == ("delivered", "complaint")


def deal_won(ws: str, contact_id: str, at: datetime, amount: int) -> Any:
    deal = pipeline_events.Deal(id=str(uuid7()), workspace_id=ws, contact_id=contact_id, amount_minor=amount,
                                currency="EUR", title="Deal")
    deal.closed_at.FromDatetime(at)
    return make_event(topic=PIPELINE, type="crm.pipeline.deal.won.v1", source="/crm/pipeline", workspace=ws,
                      subject=deal.id, payload=pipeline_events.DealWon(deal=deal))


def order(ws: str, contact_id: str, at: datetime, amount: int) -> Any:
    item = interaction_pb2.Interaction(
        id=str(uuid7()), workspace_id=ws, contact_id=contact_id, channel="CHANNEL_EMAIL",
        direction=interaction_pb2.DIRECTION_INBOUND, kind=interaction_pb2.INTERACTION_KIND_ORDER,
        order=interaction_pb2.Order(order_id=f"o-{uuid7()}",
                                    total=common_pb2.Money(amount_minor=amount, currency="USD")))
    item.occurred_at.FromDatetime(at)
    return make_event(topic=INTERACTIONS, type="crm.interactions.interaction.recorded.v1",
                      source="/crm/ingest", workspace=ws, subject=contact_id,
                      payload=ingest_events.InteractionRecorded(interaction=item))


async def test_the_report_counts_each_variant_and_attributes_conversions_to_the_last_click(
    app: App, infra: InfraSettings
) -> None:
    ws, campaign = f"ws-{uuid7()}", str(uuid7())
    a1, a2, _, b1, _ = await seed(app, ws, campaign, [
        {"variant": "A"}, {"variant": "A"}, {"variant": "A", "status": "bounced"},
        {"variant": "B", "status": "sent"}, {"variant": "B", "status": "suppressed"}])
    hit = {"user-agent": HUMAN}
    for send in (a1, a1, a2, b1):
        assert (await app.client.get(app.url(open_url, ws, send["_id"]), headers=hit)).status_code == 200
    assert (await app.client.get(app.url(open_url, ws, b1["_id"]), headers={"user-agent": "Mozilla/5.0"})
            ).status_code == 200
    for send in (a1, a1, b1):
        link = app.url(click_url, ws, send["_id"], "https://shop.example.com")
        assert (await app.client.get(link, headers=hit)).status_code == 302
    unsubscribe = app.url(unsubscribe_url, ws, a2["_id"])
    assert (await app.client.post(unsubscribe, content=b"List-Unsubscribe=One-Click")).status_code == 200
    now = datetime.now(UTC)
    await publish(infra, [
        deal_won(ws, a1["contact_id"], now + timedelta(days=1), 50_000),   # after a1's clicks: variant A
        order(ws, b1["contact_id"], now + timedelta(hours=3), 1_999),      # after b1's click: variant B
        order(ws, a2["contact_id"], now + timedelta(hours=1), 700),        # a2 opened, never clicked
        deal_won(ws, b1["contact_id"], now + timedelta(days=8), 9_000),    # after the 7-day window
        deal_won(ws, a1["contact_id"], now - timedelta(days=1), 1_000),    # before any click
    ])
    headers = bearer(token_for(infra, ws, roles=("marketing",)))
    path = f"/v1/campaigns/{campaign}/report"

    async def attributed() -> bool:
        count: int = await app.db.conversions.count_documents({"workspace_id": ws})
        return count >= 2

    await eventually(attributed, what="two conversions")
    await asyncio.sleep(1.0)  # the unattributable ones, had they been wrongly counted
    response = await app.client.get(path, params={"interval": "hour"}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    variants = {v["variant"]: v for v in body["variants"]}
    a, b = variants["A"], variants["B"]
    names = ("sent", "delivered", "bounced", "suppressed", "opened_unique", "opened_total", "bot_opens",
             "clicked_unique", "clicked_total", "unsubscribed", "conversions")
    assert {k: a[k] for k in names} == {
        "sent": 3, "delivered": 2, "bounced": 1, "suppressed": 0, "opened_unique": 2, "opened_total": 3,
        "bot_opens": 0, "clicked_unique": 1, "clicked_total": 2, "unsubscribed": 1, "conversions": 1}
    assert a["revenue"] == [{"currency": "EUR", "amount_minor": 50_000}]
    assert {k: b[k] for k in ("sent", "delivered", "suppressed", "opened_unique", "bot_opens",
                              "clicked_unique", "conversions")} == {
        "sent": 1, "delivered": 0, "suppressed": 1, "opened_unique": 1, "bot_opens": 1, "clicked_unique": 1,
        "conversions": 1}
    assert b["revenue"] == [{"currency": "USD", "amount_minor": 1_999}]
    assert sum(row["opens"] for row in body["series"]) == 4
    assert sum(row["clicks"] for row in body["series"]) == 3
    assert sum(row["unsubscribes"] for row in body["series"]) == 1
    assert all(row["at"].endswith(":00:00+00:00") for row in body["series"])
    invalid = await app.client.get(path, params={"interval": "week"}, headers=headers)
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["field"] == "interval"
    other = bearer(token_for(infra, f"ws-{uuid7()}", roles=("marketing",)))
    assert (await app.client.get(path, headers=other)).status_code == 404
    assert (await app.client.get(path)).status_code == 401
    support = bearer(token_for(infra, ws, roles=("support",)))
    assert (await app.client.get(path, headers=support)).status_code == 403

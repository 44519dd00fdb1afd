"""The WhatsApp Cloud API webhook, from Meta's signed POST to the interaction stream."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from crm_ingest.domain.interaction import interaction_id
from crm_ingest.main import create_app as create_ingest
from crm_ingest.settings import Settings as IngestSettings
from crmkit.ids import uuid7
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, eventually
from crmkit.topics import INGEST_RAW, dlq

from .conftest import WHATSAPP_PHONE_ID, WHATSAPP_VERIFY_TOKEN, WORKSPACE, Platform

pytestmark = pytest.mark.integration


def wa_id() -> str:
    """A WhatsApp user of one test's own: a phone number in E.164 without the "+"."""
    return "1555" + "".join(random.choices("0123456789", k=7))


def wamid() -> str:
    return f"wamid.{uuid7().hex}"


def delivery(phone_id: str = WHATSAPP_PHONE_ID, *, messages: list[dict[str, Any]] | None = None,
             statuses: list[dict[str, Any]] | None = None, name: str = "Ada Lovelace") -> bytes:
    value: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_id}}
    if messages:
        value["contacts"] = [{"profile": {"name": name}, "wa_id": m["from"]} for m in messages]
        value["messages"] = messages
    if statuses:
        value["statuses"] = statuses
    return json.dumps({"object": "whatsapp_business_account", "entry": [
        {"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]}).encode()


def text(sender: str, message_id: str, body: str = "Where is my order?") -> dict[str, Any]:
    return {"from": sender, "id": message_id, "timestamp": str(int(datetime.now(UTC).timestamp())),
            "type": "text", "text": {"body": body}}


def status(message_id: str, name: str, recipient: str) -> dict[str, Any]:
    return {"id": message_id, "status": name, "timestamp": "1763884900", "recipient_id": recipient}


async def handled(platform: Platform, before: int, count: int) -> None:
    consumer = platform.ingest_app.state.runtime.consumers[0]

    async def done() -> bool:
        return bool(consumer.processed >= before + count)

    await eventually(done, what=f"{count} raw records handled")


def processed(platform: Platform) -> int:
    return int(platform.ingest_app.state.runtime.consumers[0].processed)


async def test_meta_verifies_the_webhook_with_the_configured_token_only(platform: Platform) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": WHATSAPP_VERIFY_TOKEN,
             "hub.challenge": "1158201444"}
    ok = await platform.ingest.get("/v1/channels/whatsapp/webhook", params=query)
    assert ok.status_code == 200
    assert ok.text == "1158201444"
    assert ok.headers["content-type"].startswith("text/plain")
    for wrong in ({"hub.verify_token": "not-the-token"}, {"hub.mode": "unsubscribe"},
                  {"hub.verify_token": ""}):
        refused = await platform.ingest.get("/v1/channels/whatsapp/webhook", params={**query, **wrong})
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert "1158201444" not in refused.text


@pytest.mark.parametrize(
    ("body", "signature", "status", "slug"),
    [(delivery(messages=[text("15550001111", "wamid.x")]), "sha256=" + "0" * 64, 401, "invalid-signature"),
     (b"{}", "", 401, "invalid-signature"),
     (b"not json", None, 422, "not-whatsapp"),
     (b'{"object": "page", "entry": []}', None, 422, "not-whatsapp"),
     (b"x" * (64 * 1024 + 1), None, 413, "too-large")],
    ids=["wrong-signature", "no-signature", "not-json", "not-whatsapp", "oversized"],
)
async def test_unsigned_oversized_or_foreign_deliveries_are_refused_with_a_problem(
    platform: Platform, body: bytes, signature: str | None, status: int, slug: str
) -> None:
    if signature == "":
        response = await platform.ingest.post("/v1/channels/whatsapp/webhook", content=body,
                                              headers={"Content-Type": "application/json"})
    else:
        response = await platform.whatsapp(body, signature)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith(slug)


async def test_a_text_message_delivered_twice_becomes_one_interaction_on_the_stream(
    platform: Platform,
) -> None:
    sender, message_id = wa_id(), wamid()
    body = delivery(messages=[text(sender, message_id, "Hello from WhatsApp")], name="Ada Lovelace")
    before = processed(platform)
    replies = [await platform.whatsapp(body) for _ in range(2)]  # Meta retries a delivery
    assert [r.status_code for r in replies] == [200, 200]
    assert replies[0].json() == {"status": "accepted", "accepted": 1, "dead_lettered": 0, "ignored": 0}

    item = await platform.wait_stored(message_id, "whatsapp")
    assert (item["channel"], item["direction"], item["sender"], item["sender_name"], item["text"]) == (
        "whatsapp", "inbound", f"+{sender}", "Ada Lovelace", "Hello from WhatsApp")
    assert item["conversation_id"] == f"{WHATSAPP_PHONE_ID}:{sender}"
    contact = (await platform.contacts.get(f"/v1/contacts/{item['contact_id']}",
                                           headers=bearer(platform.token))).json()
    assert contact["display_name"] == "Ada Lovelace"
    assert {"kind": "whatsapp", "value": f"+{sender}"} in contact["identities"]

    async def on_timeline() -> bool:  # contacts consumed it from crm.interactions.v1
        page = (await platform.contacts.get(f"/v1/contacts/{item['contact_id']}/timeline",
                                            headers=bearer(platform.token))).json()
        return [(e["channel"], e["summary"]) for e in page["items"]] == [("whatsapp", "Hello from WhatsApp")]

    await eventually(on_timeline, what="the interaction on the contact's timeline")
    await handled(platform, before, 2)
    interactions = platform.ingest_app.state.service.db.db.interactions
    assert await interactions.count_documents(
        {"workspace_id": WORKSPACE, "_id": interaction_id(WORKSPACE, "whatsapp", message_id)}) == 1


async def test_an_image_becomes_a_media_reference_with_its_caption_as_the_text(platform: Platform) -> None:
    message_id = wamid()
    image = {"from": wa_id(), "id": message_id, "timestamp": "1763884800", "type": "image",
             "context": {"from": "15550783881", "id": "wamid.earlier"},
             "image": {"id": "1482934718947", "mime_type": "image/jpeg", "sha256": "abc=",
                       "caption": "Broken"}}
    assert (await platform.whatsapp(delivery(messages=[image]))).status_code == 200
    item = await platform.wait_stored(message_id, "whatsapp")
    assert item["text"] == "Broken"
    assert item["in_reply_to"] == "wamid.earlier"
    assert item["media"] == [{"kind": "image", "provider_id": "1482934718947", "mime_type": "image/jpeg",
                              "caption": "Broken", "filename": ""}]


async def test_statuses_update_our_message_and_never_become_interactions(platform: Platform) -> None:
    person, ours, unknown = wa_id(), wamid(), wamid()
    interactions = platform.ingest_app.state.service.db.db.interactions
    ours_id = interaction_id(WORKSPACE, "whatsapp", ours)
    # An outbound message as the (future) outbound adapter stores it.
    await interactions.insert_one({"_id": ours_id, "workspace_id": WORKSPACE, "channel": "whatsapp",
                                   "direction": "outbound", "message_id": ours,
                                   "contact_id": str(uuid4())})
    before = processed(platform)
    response = await platform.whatsapp(delivery(statuses=[
        status(ours, "delivered", person), status(ours, "read", person), status(unknown, "sent", person)]))
    assert response.json()["accepted"] == 3
    await handled(platform, before, 3)
    doc = await interactions.find_one({"_id": ours_id})
    assert doc is not None
    assert set(doc["delivery"]) == {"delivered_at", "read_at"}
    assert doc["delivery"]["read_at"] == datetime.fromtimestamp(1763884900, UTC)
    assert await interactions.count_documents(
        {"_id": {"$in": [interaction_id(WORKSPACE, "whatsapp", m) for m in (unknown,)]}}) == 0
    assert await interactions.count_documents({"workspace_id": WORKSPACE, "sender": f"+{person}"}) == 0


async def test_a_message_to_an_unmapped_business_number_is_dead_lettered_not_dropped(
    platform: Platform,
) -> None:
    message_id = wamid()
    dlq_consumer = AIOKafkaConsumer(dlq(INGEST_RAW), bootstrap_servers=platform.infra.kafka_bootstrap_servers,
                                    auto_offset_reset="earliest")
    await dlq_consumer.start()
    try:
        response = await platform.whatsapp(delivery("999000111", messages=[text(wa_id(), message_id)]))
        assert response.status_code == 200  # Meta's retries could not fix it
        assert response.json()["dead_lettered"] == 1
        found: list[dict[str, bytes]] = []

        async def dead_lettered() -> bool:
            for records in (await dlq_consumer.getmany(timeout_ms=200)).values():
                found.extend(dict(r.headers) for r in records if message_id.encode() in (r.value or b""))
            return bool(found)

        await eventually(dead_lettered, what="the message in the DLQ")
    finally:
        await dlq_consumer.stop()
    assert found[0]["dlq_reason"] == b"no workspace for WhatsApp phone_number_id 999000111"
    assert found[0]["dlq_source"] == b"whatsapp-webhook"
    assert found[0]["dlq_topic"] == INGEST_RAW.encode()
    assert (await platform.interaction(message_id, "whatsapp")).status_code == 404


async def test_the_channel_is_not_there_until_it_is_configured(infra: InfraSettings) -> None:
    app = create_ingest(IngestSettings(infra=infra))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        for response in (await client.get("/v1/channels/whatsapp/webhook", params={"hub.mode": "subscribe"}),
                         await client.post("/v1/channels/whatsapp/webhook", content=b"{}")):
            assert response.status_code == 404
            assert response.headers["content-type"] == "application/problem+json"


async def test_a_reaction_is_recorded_on_the_message_it_reacts_to(platform: Platform) -> None:
    person, message_id = wa_id(), wamid()
    await platform.whatsapp(delivery(messages=[text(person, message_id)]))
    await platform.wait_stored(message_id, "whatsapp")
    reaction = {"from": person, "id": wamid(), "timestamp": "1763884900", "type": "reaction",
                "reaction": {"message_id": message_id, "emoji": "\U0001f44d"}}
    assert (await platform.whatsapp(delivery(messages=[reaction]))).status_code == 200

    async def reacted() -> bool:
        item = await platform.wait_stored(message_id, "whatsapp")
        return bool(item["reactions"])

    await eventually(reacted, what="the reaction on the message")
    item = await platform.wait_stored(message_id, "whatsapp")
    assert [r["emoji"] for r in item["reactions"]] == ["\U0001f44d"]
    # The reaction is not an interaction of its own.
    assert (await platform.interaction(reaction["id"], "whatsapp")).status_code == 404

"""Campaigns sent end to end with contacts beside (real MongoDB, PostgreSQL, broker and gRPC):
the audience streamed from segments minus exclusions, consent and suppression respected, one
OutboundMessage per recipient on crm.outbound.v1, delivery statuses back; throttled; pause,
resume and cancel between batches; a restart mid-send sends nobody the campaign twice; bad
input is a 422 naming the field, and another workspace sees nothing."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from pymongo import AsyncMongoClient

from crm.campaigns.v1 import events_pb2 as campaign_events
from crm.ingest.v1 import events_pb2 as ingest_events
from crm.ingest.v1 import outbound_pb2
from crm_campaigns.main import create_app
from crm_campaigns.settings import Settings
from crm_campaigns.store.campaigns import address_hash
from crm_contacts.main import create_app as create_contacts
from crm_contacts.settings import Settings as ContactsSettings
from crmkit.ids import uuid7
from crmkit.kafka import Envelope, make_event
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, eventually, free_port, publish, running_app, token_for
from crmkit.topics import CAMPAIGNS, INTERACTIONS, OUTBOUND

pytestmark = pytest.mark.integration

Document = dict[str, Any]
TEMPLATE = {
    "name": "Spring",
    "subject": "Hello {{ contact.first_name | default('friend') }}",
    "html": "<p>Hi {{ contact.first_name }} from {{ company.name | default('us') }}: "
            "<a href=\"https://example.com/offer\">offer</a> <a href=\"{{ unsubscribe_url }}\">stop</a></p>",
    "text": "Hi {{ contact.first_name }}",
}


@dataclass
class Apps:
    contacts: httpx.AsyncClient
    settings: Settings
    mongo: AsyncMongoClient[Document]

    @property
    def db(self) -> Any:
        return self.mongo[self.settings.database_name]


@pytest.fixture(scope="module")
async def apps(infra: InfraSettings) -> AsyncIterator[Apps]:
    # Contacts with its own database and consumer group. Campaigns is started by each test
    # (one stops it mid-send and starts it again).
    contacts_infra = infra.model_copy(update={"database_prefix": f"{infra.database_prefix}cs_",
                                              "consumer_group_prefix": f"{infra.consumer_group_prefix}cs."})
    contacts_settings = ContactsSettings(http_port=free_port(), grpc_port=free_port(), infra=contacts_infra)
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra,
                        contacts_grpc_target=f"127.0.0.1:{contacts_settings.grpc_port}",
                        sender_poll_seconds=0.2, sender_batch_size=2)
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(infra.mongo_uri, tz_aware=True)
    try:
        async with running_app(create_contacts(contacts_settings)) as contacts:
            yield Apps(contacts, settings, mongo)
    finally:
        await mongo.close()


class Topic:
    """One workspace's events on a topic, from its beginning."""

    def __init__(self, infra: InfraSettings, topic: str, ws: str) -> None:
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=infra.kafka_bootstrap_servers,
                                         auto_offset_reset="earliest")
        self.ws = ws
        self.envelopes: list[Envelope] = []

    async def poll(self) -> list[Envelope]:
        for records in (await self.consumer.getmany(timeout_ms=300)).values():
            for record in records:
                envelope = Envelope.from_record(record.headers, record.value)
                if envelope.workspace == self.ws:
                    self.envelopes.append(envelope)
        return self.envelopes

    def outbound(self) -> dict[str, outbound_pb2.OutboundMessage]:
        """By message id: the relay may hand a message over again after a restart; ingest
        delivers each id once."""
        found: dict[str, outbound_pb2.OutboundMessage] = {}
        for envelope in self.envelopes:
            message = envelope.parse(outbound_pb2.OutboundMessage)
            assert isinstance(message, outbound_pb2.OutboundMessage)
            found[message.id] = message
        return found

    def types(self) -> list[str]:
        return [e.type for e in self.envelopes]


@dataclass
class Topics:
    ws: str
    outbound: Topic
    campaigns: Topic


@pytest.fixture
async def topics(infra: InfraSettings) -> AsyncIterator[Topics]:
    """A fresh workspace and its events on crm.outbound.v1 and crm.campaigns.v1."""
    ws = f"ws-cs-{secrets.token_hex(4)}"
    made = Topics(ws, Topic(infra, OUTBOUND, ws), Topic(infra, CAMPAIGNS, ws))
    for topic in (made.outbound, made.campaigns):
        await topic.consumer.start()
    try:
        yield made
    finally:
        for topic in (made.outbound, made.campaigns):
            await topic.consumer.stop()


async def contact(apps: Apps, headers: dict[str, str], *tags: str, consent: str | None = "granted",
                  name: str | None = None) -> tuple[str, str]:
    name = name or f"P{secrets.token_hex(3)}"
    address = f"{name.lower()}@example.com"
    created = await apps.contacts.post("/v1/contacts", headers=headers,
                                       json={"first_name": name, "emails": [address], "tags": list(tags)})
    assert created.status_code == 201, created.text
    contact_id = created.json()["id"]
    if consent:
        said = await apps.contacts.put(f"/v1/contacts/{contact_id}/consents", headers=headers,
                                       json={"channel": "email", "purpose": "marketing", "status": consent,
                                             "source": "signup form"})
        assert said.status_code == 200, said.text
    return contact_id, address


async def segment(apps: Apps, headers: dict[str, str], tag: str) -> str:
    made = await apps.contacts.post("/v1/segments", headers=headers,
                                    json={"name": f"tag {tag}",
                                          "rules": {"field": "tags", "op": "has", "value": tag}})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def template(campaigns: httpx.AsyncClient, headers: dict[str, str]) -> str:
    made = await campaigns.post("/v1/templates", headers=headers, json=TEMPLATE)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def status_of(campaigns: httpx.AsyncClient, headers: dict[str, str],
                    campaign_id: str) -> dict[str, Any]:
    found = await campaigns.get(f"/v1/campaigns/{campaign_id}", headers=headers)
    assert found.status_code == 200, found.text
    return dict(found.json())


def delivery(ws: str, send_id: str, contact_id: str, status: str, error: str = "") -> Any:
    payload = ingest_events.DeliveryUpdated(interaction_id=str(uuid7()), contact_id=contact_id,
                                            channel="CHANNEL_EMAIL", status=status, error=error,
                                            outbound_id=send_id, origin="campaigns", reference=send_id)
    payload.at.FromDatetime(datetime.now(UTC))
    return make_event(topic=INTERACTIONS, type="crm.interactions.delivery.updated.v1", source="/crm/ingest",
                      workspace=ws, subject=contact_id, payload=payload)


async def test_a_campaign_reaches_consenting_unsuppressed_members_once_and_hears_back(
        apps: Apps, infra: InfraSettings, topics: Topics) -> None:
    ws = topics.ws
    headers = bearer(token_for(infra, ws, roles=("marketing",)))  # campaigns' role
    admin = bearer(token_for(infra, ws, roles=("admin",)))  # contacts' writes
    tag, excluded_tag = f"t{secrets.token_hex(3)}", f"x{secrets.token_hex(3)}"
    ada_name = f"Ada{secrets.token_hex(2)}"
    ada, ada_address = await contact(apps, admin, tag, name=ada_name)
    bounced, bounced_address = await contact(apps, admin, tag)
    refused, _ = await contact(apps, admin, tag, consent="withdrawn")
    silent, _ = await contact(apps, admin, tag, consent=None)
    await contact(apps, admin, tag, excluded_tag)  # in the audience and in the exclusion
    audience, exclusion = await segment(apps, admin, tag), await segment(apps, admin, excluded_tag)
    nobody = await segment(apps, admin, f"none{secrets.token_hex(3)}")
    await apps.db.suppression.insert_one({"_id": f"{ws}:{address_hash(bounced_address)}", "workspace_id": ws,
                                          "hash": address_hash(bounced_address.upper()), "reason": "bounced",
                                          "at": datetime.now(UTC)})

    async with running_app(create_app(apps.settings)) as campaigns:
        # Bad templates: each unknown placeholder and syntax error named.
        bad = await campaigns.post("/v1/templates", headers=headers,
                                   json={**TEMPLATE, "subject": "{{ contact.shoe_size }}",
                                         "text": "{% if %}"})
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")
        named = {(e["field"], e["message"].split(":")[0]) for e in bad.json()["errors"]}
        assert ("subject", "contact.shoe_size") in named
        assert "text" in {f for f, _ in named}
        template_id = await template(campaigns, headers)
        preview = await campaigns.post(f"/v1/templates/{template_id}/preview", headers=headers,
                                       json={"contact_id": ada})
        assert preview.status_code == 200, preview.text
        assert preview.json()["subject"] == f"Hello {ada_name}"
        assert (await campaigns.post(f"/v1/templates/{template_id}/preview", headers=headers,
                                     json={"contact_id": str(uuid7())})).status_code == 404

        body = {"name": "Spring", "template_id": template_id,
                "audience": {"segments": [audience], "exclude": [exclusion]}}
        # Bad campaigns: unknown segment, unknown template, a schedule in the past.
        for change, field in ((({"audience": {"segments": [str(uuid7())]}}), "audience.segments"),
                              ({"template_id": str(uuid7())}, "template_id"),
                              ({"schedule_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
                               "schedule_at")):
            refused_body = await campaigns.post("/v1/campaigns", headers=headers, json={**body, **change})
            assert refused_body.status_code == 422, (change, refused_body.text)
            assert field in {e["field"] for e in refused_body.json()["errors"]}
        empty = await campaigns.post("/v1/campaigns", headers=headers,
                                     json={**body, "audience": {"segments": [nobody]}})
        assert empty.status_code == 201, empty.text
        no_one = await campaigns.post(f"/v1/campaigns/{empty.json()['id']}/send", headers=headers)
        assert no_one.status_code == 422
        assert [e["field"] for e in no_one.json()["errors"]] == ["audience"]
        a_minute_ago = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        past = await campaigns.post(f"/v1/campaigns/{empty.json()['id']}/schedule", headers=headers,
                                    json={"schedule_at": a_minute_ago})
        assert past.status_code == 422

        made = await campaigns.post("/v1/campaigns", headers=headers, json=body)
        assert made.status_code == 201, made.text
        campaign_id = made.json()["id"]
        # Another workspace sees nothing of it.
        other = bearer(token_for(infra, f"{ws}-b", roles=("admin",)))
        assert (await campaigns.get(f"/v1/campaigns/{campaign_id}", headers=other)).status_code == 404
        assert (await campaigns.post(f"/v1/campaigns/{campaign_id}/send", headers=other)).status_code == 404
        assert (await campaigns.get(f"/v1/templates/{template_id}", headers=other)).status_code == 404
        assert (await campaigns.get("/v1/campaigns", headers=other)).json()["items"] == []

        sent = await campaigns.post(f"/v1/campaigns/{campaign_id}/send", headers=headers)
        assert sent.status_code == 200, sent.text
        assert sent.json()["status"] == "sending"

        async def done() -> bool:
            return bool((await status_of(campaigns, headers, campaign_id))["status"] == "sent")

        await eventually(done, timeout=30, what="the campaign to be sent")
        progress = (await status_of(campaigns, headers, campaign_id))["progress"]
        assert progress == {"queued": 1, "sent": 0, "delivered": 0, "bounced": 0, "failed": 0,
                            "suppressed": 3}
        sends = {d["contact_id"]: d async for d in apps.db.sends.find({"workspace_id": ws,
                                                                       "campaign_id": campaign_id})}
        assert {c: (d["status"], d["reason"]) for c, d in sends.items()} == {
            ada: ("queued", ""), bounced: ("suppressed", "bounced"), refused: ("suppressed", "no_consent"),
            silent: ("suppressed", "no_consent")}  # the excluded member has no send at all

        outbound = topics.outbound

        async def handed_over() -> bool:
            await outbound.poll()
            return len(outbound.outbound()) >= 1

        await eventually(handed_over, timeout=30, what="the OutboundMessage")
        await asyncio.sleep(1)
        await outbound.poll()
        messages = list(outbound.outbound().values())
        assert len(messages) == 1
        message = messages[0]
        assert (message.id, message.reference) == (sends[ada]["_id"], sends[ada]["_id"])
        assert message.origin == "campaigns"
        assert message.recipient.value == ada_address
        assert message.subject == f"Hello {ada_name}"
        assert "List-Unsubscribe" in message.headers
        assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "/v1/t/" in message.html  # links tracked, pixel added
        assert "https://example.com/offer\"" not in message.html

        # Ingest's statuses come back: delivered, then a bounce that suppresses the address.
        send_id = sends[ada]["_id"]
        await publish(infra, [delivery(ws, send_id, ada, "sent"), delivery(ws, send_id, ada, "delivered")])

        async def delivered() -> bool:
            return bool((await status_of(campaigns, headers, campaign_id))["progress"]["delivered"] == 1)

        await eventually(delivered, timeout=30, what="the delivered status")
        await publish(infra, [delivery(ws, send_id, ada, "sent"),
                              delivery(ws, send_id, ada, "bounced", "550 gone")])

        async def bounced_back() -> bool:
            doc = await apps.db.sends.find_one({"_id": send_id})
            return bool(doc["status"] == "bounced")

        await eventually(bounced_back, timeout=30, what="the bounce")
        blocked = await apps.db.suppression.find_one({"workspace_id": ws, "hash": address_hash(ada_address)})
        assert blocked is not None
        assert blocked["reason"] == "bounced"

        events = topics.campaigns

        async def published() -> bool:
            await events.poll()
            types = {t.rsplit(".", 1)[0] for t in events.types()}
            return {"crm.campaigns.campaign.started", "crm.campaigns.campaign.completed",
                    "crm.campaigns.message.delivered", "crm.campaigns.message.bounced"} <= types

        await eventually(published, timeout=30, what="campaign.* and message.* events")
        # The late "sent" after "delivered" changed nothing, so no second message.sent... only one.
        assert events.types().count("crm.campaigns.message.sent.v1") == 1
        completed = next(e for e in events.envelopes if e.type == "crm.campaigns.campaign.completed.v1")
        payload = completed.parse(campaign_events.CampaignCompleted)
        assert isinstance(payload, campaign_events.CampaignCompleted)
        assert (payload.campaign_id, payload.queued, payload.suppressed) == (campaign_id, 1, 3)

        # A scheduled campaign starts at its time; the bounced address is suppressed in it.
        later = await campaigns.post("/v1/campaigns", headers=headers, json=body)
        at = datetime.now(UTC) + timedelta(seconds=2)
        scheduled = await campaigns.post(f"/v1/campaigns/{later.json()['id']}/schedule", headers=headers,
                                         json={"schedule_at": at.isoformat()})
        assert scheduled.status_code == 200, scheduled.text
        assert scheduled.json()["status"] == "scheduled"

        async def later_done() -> bool:
            return bool((await status_of(campaigns, headers, later.json()["id"]))["status"] == "sent")

        await eventually(later_done, timeout=30, what="the scheduled campaign")
        final = await status_of(campaigns, headers, later.json()["id"])
        assert datetime.fromisoformat(final["started_at"]) >= at
        assert (final["progress"]["queued"], final["progress"]["suppressed"]) == (0, 4)
        reasons = {d["contact_id"]: d["reason"]
                   async for d in apps.db.sends.find({"campaign_id": later.json()["id"]})}
        assert reasons[ada] == "bounced"


async def test_throttled_sending_survives_a_restart_and_obeys_pause_resume_and_cancel(
        apps: Apps, infra: InfraSettings, topics: Topics) -> None:
    ws = topics.ws
    headers = bearer(token_for(infra, ws, roles=("admin",)))
    tag = f"t{secrets.token_hex(3)}"
    people = [await contact(apps, headers, tag) for _ in range(6)]
    audience = await segment(apps, headers, tag)

    async def count(campaign_id: str) -> int:
        return int(await apps.db.sends.count_documents({"workspace_id": ws, "campaign_id": campaign_id}))

    async def new_campaign(campaigns: httpx.AsyncClient, template_id: str) -> str:
        # 60 a minute, in batches of 2 (the test's batch size): one batch every 2 seconds.
        made = await campaigns.post("/v1/campaigns", headers=headers, json={
            "name": "Drip", "template_id": template_id, "audience": {"segments": [audience]},
            "throttle_per_minute": 60})
        assert made.status_code == 201, made.text
        campaign_id = str(made.json()["id"])
        assert (await campaigns.post(f"/v1/campaigns/{campaign_id}/send", headers=headers)).status_code == 200
        return campaign_id

    async with running_app(create_app(apps.settings)) as campaigns:
        template_id = await template(campaigns, headers)
        crashing = await new_campaign(campaigns, template_id)

        async def started() -> bool:
            return await count(crashing) >= 2

        await eventually(started, timeout=30, what="the first batch")
    # Stopped mid-send: not everyone has been sent to yet.
    assert await count(crashing) < 6

    async with running_app(create_app(apps.settings)) as campaigns:
        async def finished() -> bool:
            return bool((await status_of(campaigns, headers, crashing))["status"] == "sent")

        await eventually(finished, timeout=45, what="the campaign to finish after the restart")
        sends = [d async for d in apps.db.sends.find({"workspace_id": ws, "campaign_id": crashing})]
        assert sorted(d["contact_id"] for d in sends) == sorted(c for c, _ in people)
        times = sorted(d["created_at"] for d in sends)
        assert times[-1] - times[0] >= timedelta(seconds=3)  # throttled: 3 batches, 2 s apart at least

        outbound = topics.outbound

        async def all_handed_over() -> bool:
            await outbound.poll()
            return len([m for m in outbound.outbound().values() if m.id in {d["_id"] for d in sends}]) == 6

        await eventually(all_handed_over, timeout=30, what="six OutboundMessages")
        mine = [m for m in outbound.outbound().values() if m.id in {d["_id"] for d in sends}]
        assert sorted(m.recipient.value for m in mine) == sorted(a for _, a in people)  # each once

        # Pause: nothing more goes out until resumed.
        pausing = await new_campaign(campaigns, template_id)

        async def first_batch() -> bool:
            return await count(pausing) >= 2

        await eventually(first_batch, timeout=30, what="the first batch")
        paused = await campaigns.post(f"/v1/campaigns/{pausing}/pause", headers=headers)
        assert paused.status_code == 200, paused.text
        assert paused.json()["status"] == "paused"
        await asyncio.sleep(2.5)  # a batch under way may finish
        held = await count(pausing)
        await asyncio.sleep(3)
        assert await count(pausing) == held < 6
        again = await campaigns.post(f"/v1/campaigns/{pausing}/pause", headers=headers)
        assert again.status_code == 422  # not from paused
        assert (await campaigns.post(f"/v1/campaigns/{pausing}/resume", headers=headers)).status_code == 200

        async def resumed_to_the_end() -> bool:
            return bool((await status_of(campaigns, headers, pausing))["status"] == "sent")

        await eventually(resumed_to_the_end, timeout=45, what="the resumed campaign to finish")
        assert await count(pausing) == 6

        # Cancel: stops for good.
        cancelling = await new_campaign(campaigns, template_id)

        async def cancel_after_first() -> bool:
            return await count(cancelling) >= 2

        await eventually(cancel_after_first, timeout=30, what="the first batch")
        cancelled = await campaigns.post(f"/v1/campaigns/{cancelling}/cancel", headers=headers)
        assert cancelled.json()["status"] == "cancelled"
        await asyncio.sleep(2.5)
        stopped_at = await count(cancelling)
        await asyncio.sleep(3)
        assert await count(cancelling) == stopped_at < 6
        assert (await status_of(campaigns, headers, cancelling))["status"] == "cancelled"
        resumed = await campaigns.post(f"/v1/campaigns/{cancelling}/resume", headers=headers)
        assert resumed.status_code == 422

"""Journeys run end to end with contacts beside (real MongoDB, PostgreSQL, broker and gRPC):
a contact joining a segment gets a welcome, waits, and without an open gets a follow-up; a
restart mid-wait sends nobody anything twice; a second trigger while running starts nothing.
And A/B tests pick their winner from the test sends' opens."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from pymongo import AsyncMongoClient

from crm.contacts.v1 import events_pb2 as contact_events
from crm.ingest.v1 import outbound_pb2
from crm_campaigns.main import create_app
from crm_campaigns.settings import Settings
from crm_contacts.main import create_app as create_contacts
from crm_contacts.settings import Settings as ContactsSettings
from crmkit.ids import uuid7
from crmkit.kafka import Envelope, make_event
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, eventually, free_port, publish, running_app, token_for
from crmkit.topics import CONTACTS, OUTBOUND

pytestmark = pytest.mark.integration

Document = dict[str, Any]


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
    # Contacts with its own database and consumer group, so it neither takes nor writes what
    # other packages' contacts apps do. Campaigns is started by each test (one restarts it).
    contacts_infra = infra.model_copy(update={"database_prefix": f"{infra.database_prefix}cj_",
                                              "consumer_group_prefix": f"{infra.consumer_group_prefix}cj."})
    contacts_settings = ContactsSettings(http_port=free_port(), grpc_port=free_port(), infra=contacts_infra)
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra,
                        contacts_grpc_target=f"127.0.0.1:{contacts_settings.grpc_port}",
                        journey_poll_seconds=0.2)
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(infra.mongo_uri, tz_aware=True)
    try:
        async with running_app(create_contacts(contacts_settings)) as contacts:
            yield Apps(contacts, settings, mongo)
    finally:
        await mongo.close()


async def add_template(apps: Apps, ws: str, subject: str) -> str:
    """A template as the core's store writes it (``store/templates.py``)."""
    now = datetime.now(UTC)
    template_id = str(uuid7())
    await apps.db.templates.insert_one({
        "_id": template_id, "workspace_id": ws, "name": subject, "subject": subject,
        "html": "<p>Hi {{ contact.first_name }}, see <a href=\"https://example.com/x\">this</a></p>",
        "text": "Hi {{ contact.first_name }}", "fields": [], "version": 1, "created_at": now,
        "updated_at": now})
    return template_id


def joined(ws: str, segment_id: str, contact_id: str) -> Any:
    payload = contact_events.SegmentMembershipChanged(workspace_id=ws, segment_id=segment_id,
                                                      contact_id=contact_id, member=True)
    return make_event(topic=CONTACTS, type="crm.contacts.segment.membership_changed.v1",
                      source="/crm/contacts",
                      workspace=ws, subject=contact_id, payload=payload)


class Outbox:
    """The outbound messages of one workspace on crm.outbound.v1."""

    def __init__(self, infra: InfraSettings, ws: str) -> None:
        self.consumer = AIOKafkaConsumer(OUTBOUND, bootstrap_servers=infra.kafka_bootstrap_servers,
                                         auto_offset_reset="earliest")
        self.ws = ws
        self.messages: list[outbound_pb2.OutboundMessage] = []

    async def poll(self) -> list[outbound_pb2.OutboundMessage]:
        for records in (await self.consumer.getmany(timeout_ms=300)).values():
            for record in records:
                envelope = Envelope.from_record(record.headers, record.value)
                if envelope.workspace == self.ws:
                    message = envelope.parse(outbound_pb2.OutboundMessage)
                    assert isinstance(message, outbound_pb2.OutboundMessage)
                    self.messages.append(message)
        return self.messages

    def subjects(self) -> list[str]:
        """One per message id: the outbox relay may hand a message over again after a restart,
        and ingest delivers each id once."""
        return sorted({m.id: m.subject for m in self.messages}.values())


async def person(apps: Apps, headers: dict[str, str], name: str, *, consent: bool = True) -> str:
    """A contact with an email address who agreed to email marketing (unless ``consent`` is off)."""
    created = await apps.contacts.post("/v1/contacts", headers=headers,
                                       json={"first_name": name, "emails": [f"{name.lower()}@example.com"]})
    assert created.status_code == 201, created.text
    contact: str = created.json()["id"]
    if consent:
        said = await apps.contacts.put(f"/v1/contacts/{contact}/consents", headers=headers, json={
            "channel": "email", "purpose": "marketing", "status": "granted", "source": "signup form"})
        assert said.status_code == 200, said.text
    return contact


async def test_a_journey_sends_waits_and_follows_up_once_across_a_restart(
        apps: Apps, infra: InfraSettings) -> None:
    ws = f"ws-cj-{secrets.token_hex(4)}"
    headers = bearer(token_for(infra, ws, roles=("admin",)))
    name = f"Joan{secrets.token_hex(3)}"
    contact = await person(apps, headers, name)
    silent = await person(apps, headers, f"Silent{secrets.token_hex(3)}", consent=False)
    welcome = await add_template(apps, ws, f"Welcome {name}")
    nudge = await add_template(apps, ws, f"Still there {name}?")
    segment = str(uuid7())
    journey: dict[str, Any] = {
        "name": "Onboarding", "trigger": {"kind": "segment_joined", "segment_id": segment},
        "start": "welcome", "exit_on": ["unsubscribed"],
        "steps": {
            "welcome": {"kind": "send_email", "template_id": welcome, "next": "pause"},
            "pause": {"kind": "wait", "seconds": 2, "next": "opened"},
            "opened": {"kind": "condition", "test": {"engagement": "opened"},
                       "then": "done", "else": "nudge"},
            "nudge": {"kind": "send_email", "template_id": nudge},
            "done": {"kind": "exit"},
        },
    }
    outbox = Outbox(infra, ws)
    await outbox.consumer.start()
    try:
        async with running_app(create_app(apps.settings)) as campaigns:
            bad = await campaigns.post("/v1/journeys", headers=headers,
                                       json={**journey, "steps": {**journey["steps"],
                                                                  "pause": {"kind": "wait"}}})
            assert bad.status_code == 422
            assert "steps.pause.seconds" in {e["field"] for e in bad.json()["errors"]}
            made = await campaigns.post("/v1/journeys", headers=headers, json=journey)
            assert made.status_code == 201, made.text
            journey_id = made.json()["id"]
            other = bearer(token_for(infra, f"{ws}-other", roles=("admin",)))
            assert (await campaigns.get(f"/v1/journeys/{journey_id}", headers=other)).status_code == 404
            activated = await campaigns.post(f"/v1/journeys/{journey_id}/activate", headers=headers)
            assert activated.status_code == 200

            # Two triggers at once start one run: a contact never runs a journey twice at once.
            await publish(infra, [joined(ws, segment, contact), joined(ws, segment, contact),
                                  joined(ws, segment, silent)])

            async def waiting() -> bool:
                run = await apps.db.journey_runs.find_one({"workspace_id": ws, "contact_id": contact})
                return run is not None and run["step"] == "pause" and run["waiting_since"] is not None

            await eventually(waiting, timeout=30, what="the run to wait after the welcome")
            began = time.monotonic()
        # The app is down mid-wait.
        assert time.monotonic() - began < 2
        stopped = await apps.db.journey_runs.find_one({"workspace_id": ws, "contact_id": contact})
        assert stopped["step"] == "pause"
        assert stopped["state"] == "active"

        async with running_app(create_app(apps.settings)) as campaigns:
            async def finished() -> bool:
                run = await apps.db.journey_runs.find_one({"workspace_id": ws, "contact_id": contact})
                return run is not None and run["state"] == "done"

            await eventually(finished, timeout=30, what="the run to finish after the restart")

            async def both_sent() -> bool:
                return len(await outbox.poll()) >= 2

            await eventually(both_sent, timeout=30, what="the welcome and the follow-up")
            await asyncio.sleep(2)
            await outbox.poll()
            assert outbox.subjects() == sorted([f"Welcome {name}", f"Still there {name}?"])
            assert all(m.recipient.value == f"{name.lower()}@example.com" for m in outbox.messages)
            assert all(m.origin == "campaigns" and m.headers.get("List-Unsubscribe") for m in outbox.messages)
            runs = (await campaigns.get(f"/v1/journeys/{journey_id}/runs", headers=headers)).json()["items"]
            assert sorted((r["contact_id"], r["state"]) for r in runs) == sorted(
                [(contact, "done"), (silent, "done")])
            assert await apps.db.sends.count_documents({"workspace_id": ws, "contact_id": contact}) == 2
            # Who never agreed to email marketing runs the journey but is mailed nothing.
            held = [d async for d in apps.db.sends.find({"workspace_id": ws, "contact_id": silent})]
            assert held
            assert {(d["status"], d.get("reason")) for d in held} == {("suppressed", "no_consent")}
    finally:
        await outbox.consumer.stop()


async def test_an_opened_welcome_takes_the_other_branch(apps: Apps, infra: InfraSettings) -> None:
    ws = f"ws-cj-{secrets.token_hex(4)}"
    headers = bearer(token_for(infra, ws, roles=("admin",)))
    name = f"Opal{secrets.token_hex(3)}"
    contact = await person(apps, headers, name)
    welcome = await add_template(apps, ws, f"Welcome {name}")
    segment = str(uuid7())
    journey = {
        "name": "Opened?", "trigger": {"kind": "segment_joined", "segment_id": segment}, "start": "welcome",
        "steps": {
            "welcome": {"kind": "send_email", "template_id": welcome, "next": "pause"},
            "pause": {"kind": "wait", "seconds": 2, "next": "opened"},
            "opened": {"kind": "condition", "test": {"engagement": "opened"}, "then": "tag", "else": "out"},
            "tag": {"kind": "update_contact", "add_tags": ["engaged"], "next": "tell"},
            "tell": {"kind": "notify_owner", "message": "opened the welcome"},
            "out": {"kind": "exit"},
        },
    }
    async with running_app(create_app(apps.settings)) as campaigns:
        journey_id = (await campaigns.post("/v1/journeys", headers=headers, json=journey)).json()["id"]
        await campaigns.post(f"/v1/journeys/{journey_id}/activate", headers=headers)
        await publish(infra, [joined(ws, segment, contact)])

        async def sent() -> bool:
            return await apps.db.sends.find_one({"workspace_id": ws, "contact_id": contact}) is not None

        await eventually(sent, timeout=30, what="the welcome")
        # An open, as the tracking endpoint counts it (store/tracking.py's counters).
        await apps.db.sends.update_one({"workspace_id": ws, "contact_id": contact},
                                       {"$set": {"open_count": 1, "first_opened_at": datetime.now(UTC)}})

        async def ended() -> bool:
            run = await apps.db.journey_runs.find_one({"workspace_id": ws, "contact_id": contact})
            return run is not None and run["state"] != "active"

        await eventually(ended, timeout=30, what="the run to end")
        run = await apps.db.journey_runs.find_one({"workspace_id": ws, "contact_id": contact})
        assert run["state"] == "done"
        assert run["seq"] == 3  # the welcome, the tag, the owner's notification
        tagged = await apps.contacts.get(f"/v1/contacts/{contact}", headers=headers)
        assert "engaged" in tagged.json()["tags"]
        assert run["updated_at"] - run["started_at"] >= timedelta(seconds=2)


async def test_an_ab_test_sends_the_test_shares_then_the_winner_to_the_rest(
        apps: Apps, infra: InfraSettings) -> None:
    ws = f"ws-cj-{secrets.token_hex(4)}"
    headers = bearer(token_for(infra, ws, roles=("admin",)))
    tag = f"ab{secrets.token_hex(3)}"
    for i in range(40):
        made = await apps.contacts.post("/v1/contacts", headers=headers,
                                        json={"first_name": f"R{i}", "emails": [f"r{i}-{tag}@example.com"],
                                              "tags": [tag]})
        assert made.status_code == 201, made.text
        said = await apps.contacts.put(f"/v1/contacts/{made.json()['id']}/consents", headers=headers,
                                       json={"channel": "email", "purpose": "marketing", "status": "granted",
                                             "source": "signup form"})
        assert said.status_code == 200, said.text
    segment = await apps.contacts.post("/v1/segments", headers=headers,
                                       json={"name": tag,
                                             "rules": {"field": "tags", "op": "has", "value": tag}})
    assert segment.status_code == 201, segment.text
    outbox = Outbox(infra, ws)
    await outbox.consumer.start()
    try:
        async with running_app(create_app(apps.settings)) as campaigns:
            template = await campaigns.post("/v1/templates", headers=headers, json={
                "name": "AB", "subject": "Plain", "html": "<p>Hi {{ contact.first_name }}</p>", "text": "Hi"})
            assert template.status_code == 201, template.text
            made = await campaigns.post("/v1/campaigns", headers=headers, json={
                "name": "AB", "template_id": template.json()["id"],
                "audience": {"segments": [segment.json()["id"]], "exclude": []}})
            assert made.status_code == 201, made.text
            campaign = made.json()["id"]
            bad = await campaigns.put(f"/v1/campaigns/{campaign}/variants", headers=headers,
                                      json={"variants": [{"name": "A", "share_percent": 80, "subject": "x"}]})
            assert bad.status_code == 422
            assert {"variants", "variants[0].share_percent"} <= {e["field"] for e in bad.json()["errors"]}
            variants = {"variants": [{"name": "A", "share_percent": 10, "subject": "Subject A"},
                                     {"name": "B", "share_percent": 10, "subject": "Subject B"}],
                        "metric": "open", "decide_after": 3}
            put = await campaigns.put(f"/v1/campaigns/{campaign}/variants", headers=headers, json=variants)
            assert put.status_code == 200, put.text
            other = bearer(token_for(infra, f"{ws}-other", roles=("admin",)))
            assert (await campaigns.get(f"/v1/campaigns/{campaign}/ab", headers=other)).status_code == 404
            sent = await campaigns.post(f"/v1/campaigns/{campaign}/send", headers=headers)
            assert sent.status_code in (200, 202), sent.text

            async def test_sends_out() -> bool:
                doc = await apps.db.campaigns.find_one({"_id": campaign})
                return doc["ab"].get("test_started_at") is not None

            await eventually(test_sends_out, timeout=30, what="the test shares to go out")
            first = [d async for d in apps.db.sends.find({"workspace_id": ws, "campaign_id": campaign})]
            assert sorted(d["variant"] for d in first) == ["A"] * 4 + ["B"] * 4
            assert all(d["ab_test"] for d in first)
            # Opens (as the tracking endpoint counts them): B 2 of 4, A 1 of 4.
            for variant, n in (("A", 1), ("B", 2)):
                for d in [d for d in first if d["variant"] == variant][:n]:
                    await apps.db.sends.update_one({"_id": d["_id"]}, {"$set": {"open_count": 1}})

            async def all_sent() -> bool:
                found = await apps.db.sends.count_documents({"workspace_id": ws, "campaign_id": campaign})
                return bool(found == 40)

            await eventually(all_sent, timeout=30, what="the winner to reach the rest")
            rest = [d async for d in apps.db.sends.find({"workspace_id": ws, "campaign_id": campaign,
                                                          "ab_test": False})]
            assert len(rest) == 32
            assert {d["variant"] for d in rest} == {"B"}
            results = (await campaigns.get(f"/v1/campaigns/{campaign}/ab", headers=headers)).json()
            assert results["winner"] == "B"
            figures = [(v["name"], v["sent"], v["opened"]) for v in results["variants"]]
            assert figures == [("A", 4, 1), ("B", 4, 2)]
            assert results["remainder_sent"] == 32

            async def all_out() -> bool:
                await outbox.poll()
                return len({m.id for m in outbox.messages}) == 40

            await eventually(all_out, timeout=30, what="40 outbound messages")
            by_id = {m.id: m.subject for m in outbox.messages}
            assert sorted(by_id.values()).count("Subject B") == 36
            assert sorted(by_id.values()).count("Subject A") == 4
    finally:
        await outbox.consumer.stop()

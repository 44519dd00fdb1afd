"""A person's erasure and merges reach campaigns: their sends, tracking hits and journey runs
go, only a hash of their address stays suppressed, and contacts hears so; with contacts itself
running (real PostgreSQL, MongoDB, broker and gRPC between the two)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from crm_campaigns.main import create_app
from crm_campaigns.settings import Settings
from crm_campaigns.store.campaigns import address_hash
from crm_contacts.main import create_app as create_contacts
from crm_contacts.settings import Settings as ContactsSettings
from crmkit.ids import uuid7
from crmkit.settings import InfraSettings
from crmkit.testing import (
    bearer,
    contact_merged_event,
    eventually,
    free_port,
    publish,
    running_app,
    token_for,
)

pytestmark = pytest.mark.integration


@dataclass
class Apps:
    contacts: httpx.AsyncClient
    campaigns: httpx.AsyncClient
    mongo: AsyncMongoClient[dict[str, Any]]
    database: str


@pytest.fixture(scope="module")
async def apps(infra: InfraSettings) -> AsyncIterator[Apps]:
    # Contacts with its own database and consumer group, so it neither takes nor writes what
    # other packages' contacts apps do; only campaigns erases here.
    contacts_infra = infra.model_copy(update={"database_prefix": f"{infra.database_prefix}cp_",
                                              "consumer_group_prefix": f"{infra.consumer_group_prefix}cp."})
    contacts_settings = ContactsSettings(http_port=free_port(), grpc_port=free_port(), infra=contacts_infra,
                                         erasure_services=["campaigns"])
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra, sender_poll_seconds=0.2,
                        contacts_grpc_target=f"127.0.0.1:{contacts_settings.grpc_port}")
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongo_uri, tz_aware=True)
    try:
        async with running_app(create_contacts(contacts_settings)) as contacts, \
                running_app(create_app(settings)) as campaigns:
            yield Apps(contacts, campaigns, mongo, settings.database_name)
    finally:
        await mongo.close()


def send_doc(ws: str, campaign_id: str, contact_id: str, address: str,
             status: str = "sent") -> dict[str, Any]:
    """A send document as the sender writes it (``store/campaigns.py``)."""
    now = datetime.now(UTC)
    return {"_id": str(uuid7()), "workspace_id": ws, "campaign_id": campaign_id, "variant": "",
            "contact_id": contact_id, "address": address, "status": status, "reason": "",
            "created_at": now, "updated_at": now, "sent_at": now}


async def test_an_erased_persons_campaign_data_goes_but_their_address_stays_suppressed(
    apps: Apps, infra: InfraSettings
) -> None:
    ws = f"ws-cp-{secrets.token_hex(4)}"
    headers = bearer(token_for(infra, ws, roles=("admin",)))
    name = f"Ada{secrets.token_hex(4)}"
    address = f"{name.lower()}@example.com"
    old_address = f"old-{name.lower()}@example.com"
    created = await apps.contacts.post("/v1/contacts", headers=headers,
                                       json={"first_name": name, "emails": [address]})
    assert created.status_code == 201, created.text
    contact = created.json()["id"]
    loser, bystander = str(uuid7()), str(uuid7())
    first, second = str(uuid7()), str(uuid7())
    db = apps.mongo[apps.database]

    # What the sender, tracking and journeys wrote about the person: two campaigns, one of
    # them to an older contact (the loser) merged into them later, and a bystander's send.
    mine = send_doc(ws, first, contact, address)
    theirs = send_doc(ws, first, loser, old_address)  # the survivor has this campaign already
    other_campaign = send_doc(ws, second, loser, old_address, status="delivered")
    kept = send_doc(ws, first, bystander, "someone.else@example.com")
    await db.sends.insert_many([mine, theirs, other_campaign, kept])
    await db.engagements.insert_many([
        {"workspace_id": ws, "send_id": mine["_id"], "contact_id": contact, "kind": "open",
         "user_agent": f"{name}'s phone", "at": datetime.now(UTC)},
        {"workspace_id": ws, "send_id": other_campaign["_id"], "contact_id": loser, "kind": "click",
         "at": datetime.now(UTC)},
        {"workspace_id": ws, "send_id": kept["_id"], "contact_id": bystander, "kind": "open",
         "at": datetime.now(UTC)},
    ])
    await db.conversions.insert_one({"_id": f"deal:{uuid7()}", "workspace_id": ws, "campaign_id": second,
                                     "send_id": other_campaign["_id"], "contact_id": loser,
                                     "at": datetime.now(UTC)})
    await db.journey_runs.insert_one({"_id": str(uuid7()), "workspace_id": ws, "journey_id": str(uuid7()),
                                      "contact_id": loser, "state": "active", "address": old_address})

    # The loser is merged into the person: its sends and runs follow, except the campaign the
    # person had already (the unique index), which keeps the loser's id.
    await publish(infra, [contact_merged_event(ws, loser, contact)])

    async def merged() -> bool:
        return await db.sends.count_documents({"workspace_id": ws, "contact_id": contact}) == 2

    await eventually(merged, what="the loser's sends re-pointed to the survivor")
    assert (await db.sends.find_one({"_id": theirs["_id"]}) or {})["contact_id"] == loser
    assert (await db.journey_runs.find_one({"workspace_id": ws}) or {})["contact_id"] == contact
    assert (await db.conversions.find_one({"workspace_id": ws}) or {})["contact_id"] == contact

    assert (await apps.contacts.post(f"/v1/contacts/{contact}/erasure", headers=headers)).status_code == 202

    async def confirmed() -> bool:
        status = (await apps.contacts.get(f"/v1/contacts/{contact}/erasure", headers=headers)).json()
        return bool(status["complete"] and "campaigns" in status["confirmed"])

    await eventually(confirmed, what="campaigns' erasure confirmation")

    leaks = []
    for collection in await db.list_collection_names():
        if collection in ("outbox", "processed_events"):
            continue
        async for doc in db[collection].find({"workspace_id": ws}):
            text = repr(doc)
            leaks.extend(f"{collection}: {text[:200]}"
                         for needle in (address, old_address, name, contact, loser) if needle in text)
    assert leaks == []
    suppressed = {doc["hash"]: doc["reason"] async for doc in db.suppression.find({"workspace_id": ws})}
    assert suppressed == {address_hash(address): "erased", address_hash(old_address): "erased"}
    # The bystander is untouched.
    assert await db.sends.find_one({"_id": kept["_id"]}) is not None
    assert await db.engagements.count_documents({"workspace_id": ws}) == 1
    # The conversion still counts for its campaign, without naming anyone.
    assert await db.conversions.count_documents({"workspace_id": ws, "campaign_id": second}) == 1

    # The address comes back as a new contact: a later campaign to it is suppressed as erased.
    tag = f"back-{secrets.token_hex(4)}"
    returning = await apps.contacts.post("/v1/contacts", headers=headers, json={
        "first_name": "New", "emails": [address.upper()], "tags": [tag]})
    assert returning.status_code == 201, returning.text
    consent = await apps.contacts.put(f"/v1/contacts/{returning.json()['id']}/consents", headers=headers,
                                      json={"channel": "email", "purpose": "marketing", "status": "granted",
                                            "source": "form"})
    assert consent.status_code in (200, 201), consent.text
    segment = await apps.contacts.post("/v1/segments", headers=headers, json={
        "name": tag, "rules": {"all": [{"field": "tags", "op": "has", "value": tag}]}})
    assert segment.status_code == 201, segment.text
    template = await apps.campaigns.post("/v1/templates", headers=headers, json={
        "name": "later", "subject": "Hello", "html": "<p>Hello</p>", "text": "Hello"})
    assert template.status_code == 201, template.text
    later = await apps.campaigns.post("/v1/campaigns", headers=headers, json={
        "name": "later", "template_id": template.json()["id"],
        "audience": {"segments": [segment.json()["id"]]}})
    assert later.status_code == 201, later.text
    sent = await apps.campaigns.post(f"/v1/campaigns/{later.json()['id']}/send", headers=headers)
    assert sent.status_code == 200, sent.text
    outcome: list[dict[str, Any]] = []

    async def handled() -> bool:
        outcome[:] = await db.sends.find({"workspace_id": ws, "campaign_id": later.json()["id"]}).to_list()
        return bool(outcome)

    await eventually(handled, what="the later campaign's send")
    assert [(d["status"], d["reason"]) for d in outcome] == [("suppressed", "erased")]

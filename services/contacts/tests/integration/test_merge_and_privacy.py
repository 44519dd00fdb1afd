"""Merges, consent and erasure against real PostgreSQL and the broker."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
import pytest
from aiokafka import AIOKafkaConsumer

from crm.campaigns.v1 import events_pb2 as campaign_events
from crm.contacts.v1 import contacts_pb2, events_pb2
from crm_contacts.settings import Settings
from crmkit.kafka import Envelope, make_event
from crmkit.testing import eventually, grpc_auth, interaction_event, publish, token_for
from crmkit.topics import CAMPAIGNS, CONTACTS

from .conftest import Contacts, unique_email, unique_workspace

pytestmark = pytest.mark.integration


async def create(contacts: Contacts, ws: str, **body: Any) -> dict[str, Any]:
    response = await contacts.http.post("/v1/contacts", headers=contacts.headers(ws), json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def contact_events(contacts: Contacts, key: str, wanted: int) -> list[Envelope]:
    consumer = AIOKafkaConsumer(
        CONTACTS, bootstrap_servers=contacts.infra.kafka_bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[Envelope] = []
    try:
        async with asyncio.timeout(30):
            while len(found) < wanted:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [
                        Envelope.from_record(r.headers, r.value) for r in records if r.key == key.encode()
                    ]
    finally:
        await consumer.stop()
    return found


async def test_a_merge_moves_everything_to_the_survivor_and_the_loser_id_redirects(
    contacts: Contacts,
) -> None:
    ws = unique_workspace()
    headers = contacts.headers(ws)
    email, phone = unique_email(), "+442079460123"
    company = (await contacts.http.post("/v1/companies", headers=headers, json={"name": "Acme"})).json()
    survivor = await create(contacts, ws, first_name="Sam", emails=[email], tags=["a"])
    loser = await create(
        contacts,
        ws,
        first_name="Samuel",
        last_name="Jones",
        phones=[phone],
        tags=["b"],
        companies=[{"company_id": company["id"], "role": "buyer"}],
    )
    await publish(
        contacts.infra,
        [
            interaction_event(
                ws, loser["id"], f"i-{loser['id']}", datetime(2026, 11, 2, tzinfo=UTC), subject="before merge"
            )
        ],
    )

    async def on_loser_timeline() -> bool:
        page = (await contacts.http.get(f"/v1/contacts/{loser['id']}/timeline", headers=headers)).json()
        return len(page["items"]) == 1

    await eventually(on_loser_timeline, what="the loser's interaction on its timeline")
    await contacts.http.put(
        f"/v1/contacts/{loser['id']}/consents",
        headers=headers,
        json={
            "channel": "email",
            "purpose": "marketing",
            "status": "granted",
            "source": "web form",
            "proof": "f-1",
        },
    )

    no_version = await contacts.http.post(
        f"/v1/contacts/{survivor['id']}/merge", headers=headers, json={"loser_id": loser["id"]}
    )
    assert no_version.status_code == 428
    merged = await contacts.http.post(
        f"/v1/contacts/{survivor['id']}/merge",
        headers={**headers, "If-Match": '"1"'},
        json={"loser_id": loser["id"], "fields": {"first_name": "loser", "last_name": "loser"}},
    )
    assert merged.status_code == 200, merged.text
    body = merged.json()
    assert (body["first_name"], body["last_name"]) == ("Samuel", "Jones")
    assert body["emails"] == [email]
    assert body["phones"] == [phone]
    assert body["tags"] == ["a", "b"]
    assert [c["company_id"] for c in body["companies"]] == [company["id"]]

    redirected = await contacts.http.get(f"/v1/contacts/{loser['id']}", headers=headers)
    assert redirected.json()["id"] == survivor["id"]
    assert redirected.headers["content-location"] == f"/v1/contacts/{survivor['id']}"
    timeline = (await contacts.http.get(f"/v1/contacts/{survivor['id']}/timeline", headers=headers)).json()
    assert [e["summary"] for e in timeline["items"]] == ["before merge"]
    consents = (await contacts.http.get(f"/v1/contacts/{survivor['id']}/consents", headers=headers)).json()
    assert [(c["channel"], c["status"]) for c in consents["current"]] == [("email", "granted")]
    history = (await contacts.http.get(f"/v1/contacts/{survivor['id']}/merges", headers=headers)).json()
    assert [(m["loser_id"], m["actor"]) for m in history] == [(loser["id"], "tester")]

    # An interaction still carrying the loser's id (in flight during the merge) lands on the survivor.
    await publish(
        contacts.infra,
        [
            interaction_event(
                ws,
                loser["id"],
                f"late-{loser['id']}",
                datetime(2026, 11, 3, tzinfo=UTC),
                subject="after merge",
            )
        ],
    )

    async def late_on_survivor() -> bool:
        page = (await contacts.http.get(f"/v1/contacts/{survivor['id']}/timeline", headers=headers)).json()
        return [e["summary"] for e in page["items"]] == ["after merge", "before merge"]

    await eventually(late_on_survivor, what="the late interaction on the survivor's timeline")
    [event] = [
        e
        for e in await contact_events(contacts, f"{ws}:{loser['id']}", 3)
        if e.type == "crm.contacts.contact.merged.v1"
    ]
    payload = event.parse(events_pb2.ContactMerged)
    assert isinstance(payload, events_pb2.ContactMerged)
    assert (payload.survivor_id, payload.loser_id) == (survivor["id"], loser["id"])
    again = await contacts.http.post(
        f"/v1/contacts/{survivor['id']}/merge",
        headers={**headers, "If-Match": '"2"'},
        json={"loser_id": loser["id"]},
    )
    assert again.status_code == 404


async def test_consent_keeps_its_proof_and_a_campaign_unsubscribe_withdraws_it(contacts: Contacts) -> None:
    ws = unique_workspace()
    headers = contacts.headers(ws)
    contact = await create(contacts, ws, emails=[unique_email()])
    url = f"/v1/contacts/{contact['id']}/consents"
    bad = await contacts.http.put(
        url, headers=headers, json={"channel": "pigeon", "purpose": "marketing", "status": "maybe"}
    )
    assert {e["field"] for e in bad.json()["errors"]} == {"channel", "status"}
    granted = await contacts.http.put(
        url,
        headers=headers,
        json={
            "channel": "email",
            "purpose": "marketing",
            "status": "granted",
            "source": "signup form",
            "proof": "ip 203.0.113.9",
        },
    )
    assert granted.status_code == 200
    unsubscribed = campaign_events.RecipientUnsubscribed(
        workspace_id=ws,
        contact_id=contact["id"],
        channel="email",
        purpose="marketing",
        campaign_id="c-1",
        method="one_click",
    )
    unsubscribed.at.GetCurrentTime()
    event = make_event(
        topic=CAMPAIGNS,
        type="crm.campaigns.recipient.unsubscribed.v1",
        source="/crm/campaigns",
        workspace=ws,
        subject=contact["id"],
        payload=unsubscribed,
    )
    await publish(contacts.infra, [event, event])

    async def withdrawn() -> bool:
        current = (await contacts.http.get(url, headers=headers)).json()["current"]
        return [(c["status"], c["source"]) for c in current] == [("withdrawn", "campaign:c-1")]

    await eventually(withdrawn, what="the unsubscribe to withdraw consent")
    history = (await contacts.http.get(url, headers=headers)).json()["history"]
    assert [(h["status"], h["proof"]) for h in history] == [
        ("withdrawn", "one_click"),
        ("granted", "ip 203.0.113.9"),
    ]


async def test_an_erasure_leaves_no_personal_data_and_tracks_every_services_confirmation(
    contacts: Contacts,
) -> None:
    ws = unique_workspace()
    headers = contacts.headers(ws)
    email = unique_email()
    person = await create(
        contacts,
        ws,
        first_name="Erin",
        last_name="Erasable",
        emails=[email],
        phones=["+442079461111"],
        addresses=[{"city": "Leeds"}],
    )
    twin = await create(contacts, ws, first_name="E.", emails=[f"twin-{email}"])
    await contacts.http.post(
        f"/v1/contacts/{person['id']}/merge",
        headers={**headers, "If-Match": '"1"'},
        json={"loser_id": twin["id"]},
    )
    await contacts.http.put(
        f"/v1/contacts/{person['id']}/consents",
        headers=headers,
        json={"channel": "email", "purpose": "marketing", "status": "granted", "proof": f"form by {email}"},
    )
    exported = await contacts.http.get(f"/v1/contacts/{person['id']}/personal-data", headers=headers)
    assert exported.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        own = json.loads(archive.read("contacts.json"))
    assert own["contact"]["last_name"] == "Erasable"
    assert own["consents"][0]["status"] == "granted"

    sales = contacts.headers(ws, roles=("sales",))
    assert (
        await contacts.http.post(f"/v1/contacts/{person['id']}/erasure", headers=sales)
    ).status_code == 403
    erased = await contacts.http.post(f"/v1/contacts/{person['id']}/erasure", headers=headers)
    assert erased.status_code == 202
    assert erased.json()["complete"] is False
    assert (await contacts.http.get(f"/v1/contacts/{person['id']}", headers=headers)).status_code == 404

    dsn = contacts.infra.postgres_dsn_for(Settings(infra=contacts.infra).database_name)
    conn = await asyncpg.connect(dsn)
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'outbox'"
            )
        ]
        for table in tables:
            leaks = await conn.fetchval(
                f"SELECT count(*) FROM {table} t WHERE t::text ILIKE '%' || $1 || '%'"  # noqa: S608
                f" OR t::text ILIKE '%Erasable%' OR t::text ILIKE '%7946 1111%' OR t::text ILIKE '%Leeds%'",
                email.split("@")[0],
            )
            assert leaks == 0, f"personal data left in {table}"
        hashes = await conn.fetchval("SELECT count(*) FROM suppressions WHERE workspace_id = $1", ws)
        assert hashes == 3  # two emails and a phone, as salted hashes only
    finally:
        await conn.close()

    service_token = grpc_auth(token_for(contacts.infra, ws, roles=("service",), subject="ticketing"))
    confirmations = []
    for name in ("ticketing", "pipeline", "campaigns", "ingest", "partners"):
        response = await contacts.stub.ConfirmErasure(
            contacts_pb2.ConfirmErasureRequest(contact_id=person["id"], service=name),
            timeout=5,
            metadata=service_token,
        )
        confirmations.append(response.complete)
    assert confirmations == [False, False, False, False, True]
    status = (await contacts.http.get(f"/v1/contacts/{person['id']}/erasure", headers=headers)).json()
    assert status["complete"] is True
    assert set(status["confirmed"]) == {"ticketing", "pipeline", "campaigns", "ingest", "partners"}
    kinds = {e.type for e in await contact_events(contacts, f"{ws}:{twin['id']}", 3)}
    assert "crm.contacts.contact.erased.v1" in kinds
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await contacts.stub.ConfirmErasure(
            contacts_pb2.ConfirmErasureRequest(contact_id=person["id"], service="ticketing"),
            timeout=5,
            metadata=grpc_auth(token_for(contacts.infra, unique_workspace(), roles=("service",))),
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND

"""Lead scoring end to end on real PostgreSQL and broker: a model over the API, behaviour and
contacts' events on their topics, the score and its explanation over the API, and
``lead.score_changed`` on crm.pipeline.v1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from google.protobuf.message import Message

from crm.campaigns.v1 import events_pb2 as campaigns_pb2
from crm.contacts.v1 import contacts_pb2
from crm.contacts.v1 import events_pb2 as contacts_pb2_events
from crm.pipeline.v1 import events_pb2 as pipeline_pb2
from crm.ticketing.v1 import events_pb2 as tickets_pb2
from crm.ticketing.v1 import ticketing_pb2
from crm_pipeline.main import create_app
from crm_pipeline.settings import Settings
from crmkit.ids import uuid7
from crmkit.kafka import Envelope, Event, make_event
from crmkit.settings import InfraSettings
from crmkit.testing import (
    bearer,
    contact_merged_event,
    eventually,
    free_port,
    interaction_event,
    publish,
    running_app,
    token_for,
)
from crmkit.topics import CAMPAIGNS, CONTACTS, PIPELINE, TICKETS

pytestmark = pytest.mark.integration
SCORE_CHANGED = "crm.pipeline.lead.score_changed.v1"

MODEL = {
    "rules": [
        {"id": "is-lead", "kind": "attribute", "field": "lifecycle_stage", "op": "equals", "value": "lead",
         "points": 10},
        {"id": "emails", "kind": "behaviour", "event": "email_received", "points": 5},
        {"id": "chats", "kind": "behaviour", "event": "chat_message", "points": 4, "cap": 6},
        {"id": "opens", "kind": "behaviour", "event": "email_opened", "points": 2, "half_life_days": 7},
        {"id": "tickets", "kind": "behaviour", "event": "ticket_opened", "points": -3},
    ],
    "thresholds": [18],
}


@pytest.fixture(scope="module")
async def client(infra: InfraSettings) -> AsyncIterator[httpx.AsyncClient]:
    # Contacts is not running: erasures are confirmed later, nothing else needs it here.
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra,
                        contacts_grpc_target=f"127.0.0.1:{free_port()}", lead_rescore_check_seconds=0.5)
    async with running_app(create_app(settings)) as client:
        yield client


@pytest.fixture
async def changes(infra: InfraSettings) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(PIPELINE, bootstrap_servers=infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


def workspace() -> str:
    return f"ws-ls-{uuid7().hex[-10:]}"


def admin(infra: InfraSettings, ws: str) -> dict[str, str]:
    return bearer(token_for(infra, ws, roles=("admin",), subject="boss"))


def sales(infra: InfraSettings, ws: str) -> dict[str, str]:
    return bearer(token_for(infra, ws, roles=("sales",), subject="seller"))


def event(topic: str, type_: str, ws: str, contact: str, payload: Message) -> Event:
    return make_event(topic=topic, type=type_, source="/tests", workspace=ws, subject=contact,
                      payload=payload)


def contact_created(ws: str, contact: str, stage: str, version: int = 1) -> Event:
    message = contacts_pb2_events.ContactCreated(contact=contacts_pb2.Contact(
        id=contact, workspace_id=ws, lifecycle_stage=stage, version=version))
    return event(CONTACTS, "crm.contacts.contact.created.v1", ws, contact, message)


def opened(ws: str, contact: str, at: datetime) -> Event:
    message = campaigns_pb2.MessageOpened(workspace_id=ws, contact_id=contact, campaign_id="c-1",
                                          message_id=str(uuid7()))
    message.at.FromDatetime(at)
    return event(CAMPAIGNS, "crm.campaigns.message.opened.v1", ws, contact, message)


def ticket_created(ws: str, contact: str, at: datetime) -> Event:
    ticket = ticketing_pb2.Ticket(id=str(uuid7()), workspace_id=ws, contact_id=contact)
    ticket.created_at.FromDatetime(at)
    created = tickets_pb2.TicketCreated(ticket=ticket)
    return event(TICKETS, "crm.tickets.ticket.created.v1", ws, contact, created)


def email(ws: str, contact: str, at: datetime) -> Event:
    return interaction_event(ws, contact, str(uuid7()), at)


async def save_model(client: httpx.AsyncClient, infra: InfraSettings, ws: str, model: dict[str, Any],
                     version: int = 0) -> dict[str, Any]:
    response = await client.put("/v1/lead-scoring/model", json=model,
                                headers=admin(infra, ws) | {"If-Match": f'"{version}"'})
    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == f'"{version + 1}"'
    body: dict[str, Any] = response.json()
    return body


async def score_of(client: httpx.AsyncClient, infra: InfraSettings, ws: str, contact: str
                   ) -> dict[str, Any] | None:
    response = await client.get(f"/v1/contacts/{contact}/lead-score", headers=sales(infra, ws))
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_score(client: httpx.AsyncClient, infra: InfraSettings, ws: str, contact: str, score: float,
                     model_version: int = 1) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def scored() -> bool:
        found.clear()
        found.update(await score_of(client, infra, ws, contact) or {})
        return found.get("score") == score and found.get("model_version") == model_version

    await eventually(scored, what=f"a score of {score} under model {model_version}, last {found}")
    return found


async def score_changes(consumer: AIOKafkaConsumer, ws: str, contact: str, last_score: float
                        ) -> list[pipeline_pb2.LeadScoreChanged]:
    """The contact's score changes on crm.pipeline.v1, up to one to ``last_score``."""
    found: list[pipeline_pb2.LeadScoreChanged] = []
    async with asyncio.timeout(45):
        while not found or found[-1].new_score != last_score:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    envelope = Envelope.from_record(record.headers, record.value)
                    ours = envelope.workspace == ws and envelope.subject == contact
                    if envelope.type == SCORE_CHANGED and ours:
                        message = pipeline_pb2.LeadScoreChanged()
                        message.ParseFromString(envelope.data)
                        found.append(message)
    return found


async def test_behaviour_and_attributes_make_an_explained_score_published_once_per_change(
    client: httpx.AsyncClient, infra: InfraSettings, changes: AIOKafkaConsumer
) -> None:
    ws, contact = workspace(), str(uuid7())
    saved = await save_model(client, infra, ws, MODEL)
    assert saved["version"] == 1
    assert [r["id"] for r in saved["rules"]] == ["is-lead", "emails", "chats", "opens", "tickets"]
    now = datetime.now(UTC)
    mail = email(ws, contact, now)
    chats = [interaction_event(ws, contact, str(uuid7()), now, channel="whatsapp") for _ in range(2)]
    await publish(infra, [contact_created(ws, contact, "lead"), mail, mail, *chats,  # the email twice
                          opened(ws, contact, now - timedelta(days=7)), ticket_created(ws, contact, now)])

    # 10 (a lead) + 5 (one email, however often delivered) + 6 (two chats, capped) + 1 (an open
    # one half-life ago) - 3 (a ticket)
    body = await wait_score(client, infra, ws, contact, 19.0)
    explained = {c["rule_id"]: c for c in body["contributions"]}
    assert {rule: c["points"] for rule, c in explained.items()} == {
        "is-lead": 10.0, "emails": 5.0, "chats": 6.0, "opens": 1.0, "tickets": -3.0}
    assert (explained["chats"]["capped"], explained["chats"]["event_count"]) == (True, 2)
    assert [e["event_id"] for e in explained["emails"]["events"]] == [mail.envelope.id]
    assert explained["opens"]["events"][0]["points"] == 1.0

    published = await score_changes(changes, ws, contact, 19.0)
    # One event per change, each from the score the last one published.
    assert published[0].old_score == 0
    assert all(later.old_score == earlier.new_score for earlier, later in pairwise(published))
    assert published[-1].model_version == 1
    assert published[-1].top_contributions[0].rule_id == "is-lead"

    # A new model re-scores in the background and the move across the threshold is published.
    rules: list[dict[str, Any]] = MODEL["rules"]  # type: ignore[assignment]
    model = {**MODEL, "rules": [{**rules[0], "points": 0}, *rules[1:]]}
    assert (await save_model(client, infra, ws, model, version=1))["version"] == 2
    await wait_score(client, infra, ws, contact, 9.0, model_version=2)
    last = (await score_changes(changes, ws, contact, 9.0))[-1]
    assert (last.old_score, last.model_version, list(last.crossed_thresholds)) == (19.0, 2, [18.0])

    ranked = await client.get("/v1/lead-scores", params={"min": 5, "limit": 1}, headers=sales(infra, ws))
    assert ranked.status_code == 200, ranked.text
    assert [i["contact_id"] for i in ranked.json()["items"]] == [contact]
    assert ranked.json()["next_cursor"] is None


async def test_the_periodic_re_score_lets_behaviour_fade_and_publishes_the_drop(
    client: httpx.AsyncClient, infra: InfraSettings, changes: AIOKafkaConsumer
) -> None:
    ws, contact = workspace(), str(uuid7())
    await save_model(client, infra, ws, MODEL)
    await publish(infra, [opened(ws, contact, datetime.now(UTC))])
    await wait_score(client, infra, ws, contact, 2.0)
    # Two weeks pass (two half-lives) and the score was last computed two hours ago.
    conn = await asyncpg.connect(infra.postgres_dsn_for(f"{infra.database_prefix}pipeline"))
    try:
        await conn.execute("UPDATE lead_behaviour_events SET occurred_at = occurred_at - interval '14 days'"
                           " WHERE workspace_id = $1", ws)
        await conn.execute("UPDATE lead_scores SET computed_at = computed_at - interval '2 hours'"
                           " WHERE workspace_id = $1", ws)
    finally:
        await conn.close()

    body = await wait_score(client, infra, ws, contact, 0.5)
    assert body["contributions"][0]["events"][0]["points"] == 0.5
    published = await score_changes(changes, ws, contact, 0.5)
    assert [(p.old_score, p.new_score) for p in published] == [(0.0, 2.0), (2.0, 0.5)]


async def test_a_merge_folds_the_losers_behaviour_into_the_survivor(
    client: httpx.AsyncClient, infra: InfraSettings
) -> None:
    ws, loser, survivor = workspace(), str(uuid7()), str(uuid7())
    await save_model(client, infra, ws, MODEL)
    now = datetime.now(UTC)
    await publish(infra, [email(ws, loser, now), email(ws, loser, now), email(ws, survivor, now)])
    await wait_score(client, infra, ws, loser, 10.0)
    await wait_score(client, infra, ws, survivor, 5.0)

    await publish(infra, [contact_merged_event(ws, loser, survivor)])
    await wait_score(client, infra, ws, survivor, 15.0)
    assert await score_of(client, infra, ws, loser) is None
    await publish(infra, [email(ws, loser, now)])  # still addressed to the loser: the survivor's
    await wait_score(client, infra, ws, survivor, 20.0)

    ranked = (await client.get("/v1/lead-scores", params={"limit": 1}, headers=sales(infra, ws))).json()
    assert [i["contact_id"] for i in ranked["items"]] == [survivor]
    assert ranked["next_cursor"] is None


async def test_an_erased_persons_scoring_data_goes(client: httpx.AsyncClient, infra: InfraSettings) -> None:
    ws, person, bystander = workspace(), str(uuid7()), str(uuid7())
    await save_model(client, infra, ws, MODEL)
    now = datetime.now(UTC)
    await publish(infra, [contact_created(ws, person, "lead"), email(ws, person, now),
                          email(ws, bystander, now)])
    await wait_score(client, infra, ws, person, 15.0)
    await wait_score(client, infra, ws, bystander, 5.0)

    erased = contacts_pb2_events.ContactErased(workspace_id=ws, contact_id=person)
    await publish(infra, [event(CONTACTS, "crm.contacts.contact.erased.v1", ws, person, erased)])

    async def gone() -> bool:
        return await score_of(client, infra, ws, person) is None

    await eventually(gone, what="the erased person's score to go")
    assert (await score_of(client, infra, ws, bystander) or {}).get("score") == 5.0
    # Nothing of them is left to come back: a later model change scores only the bystander.
    await save_model(client, infra, ws, MODEL, version=1)
    await wait_score(client, infra, ws, bystander, 5.0, model_version=2)
    assert await score_of(client, infra, ws, person) is None


async def test_workspaces_see_and_change_only_their_own_scores_and_model(
    client: httpx.AsyncClient, infra: InfraSettings
) -> None:
    ws, other, contact = workspace(), workspace(), str(uuid7())
    await save_model(client, infra, ws, MODEL)
    await publish(infra, [email(ws, contact, datetime.now(UTC)), email(other, contact, datetime.now(UTC))])
    await wait_score(client, infra, ws, contact, 5.0)

    assert (await client.get(f"/v1/contacts/{contact}/lead-score", headers=sales(infra, other))).json().get(
        "model_version") == 0  # scored in the other workspace without its model: its own row, 0 points
    listed = (await client.get("/v1/lead-scores", params={"min": 1}, headers=sales(infra, other))).json()
    assert listed["items"] == []
    theirs = await client.get("/v1/lead-scoring/model", headers=sales(infra, other))
    assert (theirs.json()["version"], theirs.json()["rules"], theirs.headers["ETag"]) == (0, [], '"0"')
    # The other workspace's first model does not touch this one's.
    await save_model(client, infra, other, {"rules": [MODEL["rules"][1]]})  # type: ignore[index]
    assert (await client.get("/v1/lead-scoring/model", headers=sales(infra, ws))).json()["version"] == 1


async def test_bad_models_and_requests_are_refused_naming_what_is_wrong(
    client: httpx.AsyncClient, infra: InfraSettings
) -> None:
    ws = workspace()
    bad = {"rules": [
        {"id": "ok", "kind": "behaviour", "event": "email_opened", "points": 1},
        {"id": "x", "kind": "behaviour", "event": "fax_sent", "points": 1, "half_life_days": 0},
        {"id": "y", "kind": "attribute", "field": "shoe_size", "op": "equals", "value": "9",
         "points": "lots"},
    ]}
    refused = await client.put("/v1/lead-scoring/model", json=bad,
                               headers=admin(infra, ws) | {"If-Match": '"0"'})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert {e["field"] for e in refused.json()["errors"]} == {
        "rules[1].event", "rules[1].half_life_days", "rules[2].field", "rules[2].points"}
    assert (await client.get("/v1/lead-scoring/model", headers=admin(infra, ws))).json()["version"] == 0

    unconditional = await client.put("/v1/lead-scoring/model", json=MODEL, headers=admin(infra, ws))
    assert unconditional.status_code == 428
    await save_model(client, infra, ws, MODEL)
    stale = await client.put("/v1/lead-scoring/model", json=MODEL,
                             headers=admin(infra, ws) | {"If-Match": '"0"'})
    assert (stale.status_code, stale.headers["ETag"]) == (412, '"1"')
    seller = await client.put("/v1/lead-scoring/model", json=MODEL,
                              headers=sales(infra, ws) | {"If-Match": '"1"'})
    assert seller.status_code == 403
    forged = await client.get("/v1/lead-scores", params={"cursor": "bm90IG91cnM"},
                              headers=sales(infra, ws))
    assert forged.status_code == 422
    unknown = await client.get(f"/v1/contacts/{uuid7()}/lead-score", headers=sales(infra, ws))
    assert unknown.status_code == 404

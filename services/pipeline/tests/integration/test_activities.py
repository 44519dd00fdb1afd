"""Activities end to end against real PostgreSQL, the broker and contacts over gRPC: written
over HTTP, recorded from the interaction stream onto open deals, rotting deals announced once
per episode, merges re-pointed and an erased person's data gone and confirmed.

Pipelines, stages and deals are seeded in SQL (the core's tables), so that these tests depend
on the deals API only through its schema."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from crm.pipeline.v1 import events_pb2
from crm_contacts.main import create_app as create_contacts
from crm_contacts.settings import Settings as ContactsSettings
from crm_pipeline.domain.events import ACTIVITY_COMPLETED, ACTIVITY_CREATED, DEAL_ROTTING
from crm_pipeline.main import create_app
from crm_pipeline.service.rotting import RottingWatch
from crm_pipeline.settings import Settings
from crmkit.ids import uuid7
from crmkit.kafka import Envelope
from crmkit.postgres import PgDatabase, create_pool
from crmkit.settings import InfraSettings
from crmkit.testing import (
    bearer,
    contact_merged_event,
    eventually,
    export_personal_data,
    free_port,
    interaction_event,
    publish,
    running_app,
    service_token_for,
    token_for,
)
from crmkit.topics import PIPELINE

pytestmark = pytest.mark.integration


@dataclass
class Apps:
    contacts: httpx.AsyncClient
    pipeline: httpx.AsyncClient
    db: asyncpg.Pool
    grpc_port: int


@dataclass
class Seen:
    type: str
    subject: str
    payload: Any


class PipelineEvents:
    """Every activity.* and deal.rotting event on crm.pipeline.v1 since the module started."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.seen: list[Seen] = []

    async def poll(self, seconds: float = 0.3) -> None:
        batches = await self.consumer.getmany(timeout_ms=int(seconds * 1000))
        for records in batches.values():
            for record in records:
                envelope = Envelope.from_record(record.headers, record.value)
                if envelope.type == DEAL_ROTTING:
                    self.seen.append(
                        Seen(
                            envelope.type, envelope.subject, events_pb2.DealRotting.FromString(envelope.data)
                        )
                    )
                elif envelope.type in (ACTIVITY_CREATED, ACTIVITY_COMPLETED):
                    message = (
                        events_pb2.ActivityCreated
                        if envelope.type == ACTIVITY_CREATED
                        else events_pb2.ActivityCompleted
                    ).FromString(envelope.data)
                    self.seen.append(Seen(envelope.type, envelope.subject, message))

    def of(self, type_: str, subject: str) -> list[Seen]:
        return [s for s in self.seen if s.type == type_ and s.subject == subject]

    async def wait_for(self, type_: str, subject: str, count: int, timeout: float = 30) -> list[Seen]:
        deadline = time.monotonic() + timeout
        while len(self.of(type_, subject)) < count:
            assert time.monotonic() < deadline, f"{len(self.of(type_, subject))} of {count} {type_}"
            await self.poll()
        return self.of(type_, subject)

    async def settle(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await self.poll()


@pytest.fixture(scope="module")
async def apps(infra: InfraSettings) -> AsyncIterator[Apps]:
    # Contacts with its own database and consumer group; it waits for pipeline's confirmation only.
    contacts_infra = infra.model_copy(
        update={
            "database_prefix": f"{infra.database_prefix}pa_",
            "consumer_group_prefix": f"{infra.consumer_group_prefix}pa.",
        }
    )
    contacts_settings = ContactsSettings(
        http_port=free_port(), grpc_port=free_port(), infra=contacts_infra, erasure_services=["pipeline"]
    )
    settings = Settings(
        http_port=free_port(),
        grpc_port=free_port(),
        infra=infra,
        rotting_check_seconds=0.5,
        contacts_grpc_target=f"127.0.0.1:{contacts_settings.grpc_port}",
    )
    async with (
        running_app(create_contacts(contacts_settings)) as contacts,
        running_app(create_app(settings)) as pipeline,
    ):
        pool = await create_pool(infra.postgres_dsn_for(settings.database_name))
        try:
            yield Apps(contacts, pipeline, pool, settings.grpc_port)
        finally:
            await pool.close()


@pytest.fixture(scope="module")
async def events(infra: InfraSettings, apps: Apps) -> AsyncIterator[PipelineEvents]:
    consumer = AIOKafkaConsumer(
        PIPELINE, bootstrap_servers=infra.kafka_bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        yield PipelineEvents(consumer)
    finally:
        await consumer.stop()


def sales(infra: InfraSettings, ws: str, who: str = "rep-1") -> dict[str, str]:
    return bearer(token_for(infra, ws, roles=("sales",), subject=who))


def workspace() -> str:
    return f"ws-act-{secrets.token_hex(4)}"


async def seed_stage(db: asyncpg.Pool, ws: str, rotting_days: int | None = None) -> tuple[UUID, UUID]:
    """A pipeline with one open stage; returns (pipeline id, stage id)."""
    pipeline, stage = uuid7(), uuid7()
    await db.execute("INSERT INTO pipelines (id, workspace_id, name) VALUES ($1, $2, 'Sales')", pipeline, ws)
    await db.execute(
        "INSERT INTO stages (id, workspace_id, pipeline_id, name, position, probability, rotting_days)"
        " VALUES ($1, $2, $3, 'Qualified', 0, 20, $4)",
        stage,
        ws,
        pipeline,
        rotting_days,
    )
    return pipeline, stage


async def seed_deal(
    db: asyncpg.Pool,
    ws: str,
    stage: tuple[UUID, UUID],
    contact: UUID | None,
    *,
    status: str = "open",
    participants: tuple[UUID, ...] = (),
    entered: datetime | None = None,
    last_activity: datetime | None = None,
) -> UUID:
    deal = uuid7()
    await db.execute(
        "INSERT INTO deals (id, workspace_id, pipeline_id, stage_id, title, amount_minor, currency,"
        " contact_id, status, closed_at, stage_entered_at, last_activity_at, owner_id)"
        " VALUES ($1, $2, $3, $4, 'Fifty seats', 500000, 'EUR', $5, $6, $7, $8, $9, 'rep-1')",
        deal,
        ws,
        stage[0],
        stage[1],
        contact,
        status,
        None if status == "open" else datetime.now(UTC),
        entered or datetime.now(UTC),
        last_activity,
    )
    for participant in participants:
        await db.execute(
            "INSERT INTO deal_participants (workspace_id, deal_id, contact_id, role)"
            " VALUES ($1, $2, $3, 'champion')",
            ws,
            deal,
            participant,
        )
    return deal


async def new_contact(apps: Apps, infra: InfraSettings, ws: str, name: str) -> str:
    created = await apps.contacts.post(
        "/v1/contacts",
        headers=bearer(token_for(infra, ws, roles=("admin",))),
        json={"first_name": name, "emails": [f"{name.lower()}@example.com"]},
    )
    assert created.status_code == 201, created.text
    contact: str = created.json()["id"]
    return contact


async def test_activities_are_written_checked_completed_and_kept_per_workspace(
    apps: Apps, infra: InfraSettings, events: PipelineEvents
) -> None:
    ws, other = workspace(), workspace()
    headers = sales(infra, ws)
    stage = await seed_stage(apps.db, ws)
    contact = await new_contact(apps, infra, ws, f"Ada{secrets.token_hex(3)}")
    deal = await seed_deal(apps.db, ws, stage, UUID(contact))
    before = datetime.now(UTC)

    created = await apps.pipeline.post(
        "/v1/activities",
        headers=headers,
        json={
            "kind": "task",
            "subject": "Send the quote",
            "deal_id": str(deal),
            "contact_id": contact,
            "due_at": (before + timedelta(days=2)).isoformat(),
        },
    )
    assert created.status_code == 201, created.text
    task = created.json()
    assert (created.headers["ETag"], task["owner_id"], task["done"], task["kind"]) == (
        '"1"',
        "rep-1",
        False,
        "task",
    )
    last = await apps.db.fetchval("SELECT last_activity_at FROM deals WHERE id = $1", deal)
    assert last is not None
    assert last >= before

    # Every bad field at once; unknown deal and contact are fields too; nothing written.
    bad = await apps.pipeline.post(
        "/v1/activities",
        headers=headers,
        json={"kind": "fax", "due_at": "soon", "deal_id": str(uuid7()), "colour": 1},
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert {e["field"] for e in bad.json()["errors"]} == {"kind", "due_at", "colour"}
    no_deal = await apps.pipeline.post(
        "/v1/activities", headers=headers, json={"kind": "call", "subject": "Ring", "deal_id": str(uuid7())}
    )
    assert (no_deal.status_code, [e["field"] for e in no_deal.json()["errors"]]) == (422, ["deal_id"])
    no_contact = await apps.pipeline.post(
        "/v1/activities",
        headers=headers,
        json={"kind": "call", "subject": "Ring", "contact_id": str(uuid7())},
    )
    assert (no_contact.status_code, [e["field"] for e in no_contact.json()["errors"]]) == (
        422,
        ["contact_id"],
    )
    nothing = await apps.pipeline.post(
        "/v1/activities", headers=headers, json={"kind": "call", "subject": "Ring"}
    )
    assert (nothing.status_code, [e["field"] for e in nothing.json()["errors"]]) == (422, ["deal_id"])
    assert await apps.db.fetchval("SELECT count(*) FROM activities WHERE workspace_id = $1", ws) == 1

    note = await apps.pipeline.post(
        "/v1/activities",
        headers=headers,
        json={"kind": "note", "body": "Budget approved", "deal_id": str(deal)},
    )
    assert (note.status_code, note.json()["done"]) == (201, True)

    # Lists and filters.
    listed = await apps.pipeline.get(
        "/v1/activities", headers=headers, params={"deal_id": str(deal), "open": "true"}
    )
    assert [a["id"] for a in listed.json()["items"]] == [task["id"]]
    due_soon = await apps.pipeline.get(
        "/v1/activities", headers=headers, params={"due_before": (before + timedelta(days=1)).isoformat()}
    )
    assert due_soon.json()["items"] == []
    first = await apps.pipeline.get("/v1/activities", headers=headers, params={"limit": 1})
    second = await apps.pipeline.get(
        "/v1/activities", headers=headers, params={"limit": 1, "cursor": first.json()["next_cursor"]}
    )
    assert [first.json()["items"][0]["id"], second.json()["items"][0]["id"]] == [
        note.json()["id"],
        task["id"],
    ]
    assert (
        await apps.pipeline.get("/v1/activities", headers=headers, params={"cursor": "forged"})
    ).status_code == 422

    # If-Match on writes.
    url = f"/v1/activities/{task['id']}"
    assert (await apps.pipeline.patch(url, headers=headers, json={"subject": "Quote"})).status_code == 428
    stale = await apps.pipeline.patch(url, headers=headers | {"If-Match": '"9"'}, json={"subject": "Quote"})
    assert stale.status_code == 412
    patched = await apps.pipeline.patch(
        url, headers=headers | {"If-Match": '"1"'}, json={"subject": "Send quote v2", "owner_id": "rep-2"}
    )
    assert (patched.status_code, patched.headers["ETag"]) == (200, '"2"'), patched.text
    bad_patch = await apps.pipeline.patch(
        url, headers=headers | {"If-Match": '"2"'}, json={"deal_id": None, "contact_id": None}
    )
    assert [e["field"] for e in bad_patch.json()["errors"]] == ["deal_id"]

    # Completing: who and when, once; the deal's last activity moves on; events out.
    await apps.db.execute("UPDATE deals SET last_activity_at = now() - interval '9 days' WHERE id = $1", deal)
    done = await apps.pipeline.post(f"{url}/complete", headers=sales(infra, ws, "rep-2"))
    assert done.status_code == 200, done.text
    assert (done.json()["done"], done.json()["completed_by"], done.headers["ETag"]) == (True, "rep-2", '"3"')
    again = await apps.pipeline.post(f"{url}/complete", headers=headers)
    assert (again.json()["completed_by"], again.headers["ETag"]) == ("rep-2", '"3"')
    last = await apps.db.fetchval("SELECT last_activity_at FROM deals WHERE id = $1", deal)
    assert datetime.now(UTC) - last < timedelta(minutes=1)
    assert (
        await apps.pipeline.post(f"/v1/activities/{note.json()['id']}/complete", headers=headers)
    ).status_code == 422
    created_events = await events.wait_for(ACTIVITY_CREATED, str(deal), 2)
    assert task["id"] in {e.payload.activity.id for e in created_events}
    [completed] = await events.wait_for(ACTIVITY_COMPLETED, str(deal), 1)
    assert (completed.payload.activity.completed_by, completed.payload.actor) == ("rep-2", "rep-2")

    # The deal's timeline: done, else due, else written; latest first.
    timeline = await apps.pipeline.get(f"/v1/deals/{deal}/activities", headers=headers)
    assert [a["id"] for a in timeline.json()["items"]] == [task["id"], note.json()["id"]]
    assert (await apps.pipeline.get(f"/v1/deals/{uuid7()}/activities", headers=headers)).status_code == 404

    # Another workspace sees and changes none of it, and cannot hang an activity on the deal.
    theirs = sales(infra, other)
    assert (await apps.pipeline.get(url, headers=theirs)).status_code == 404
    assert (await apps.pipeline.get("/v1/activities", headers=theirs)).json()["items"] == []
    assert (
        await apps.pipeline.patch(url, headers=theirs | {"If-Match": '"3"'}, json={"subject": "x"})
    ).status_code == 404
    assert (await apps.pipeline.post(f"{url}/complete", headers=theirs)).status_code == 404
    assert (await apps.pipeline.delete(url, headers=theirs | {"If-Match": '"3"'})).status_code == 404
    assert (await apps.pipeline.get(f"/v1/deals/{deal}/activities", headers=theirs)).status_code == 404
    foreign = await apps.pipeline.post(
        "/v1/activities", headers=theirs, json={"kind": "call", "subject": "Ring", "deal_id": str(deal)}
    )
    assert [e["field"] for e in foreign.json()["errors"]] == ["deal_id"]
    no_scope = bearer(token_for(infra, ws, roles=("marketing",)))
    assert (await apps.pipeline.get("/v1/activities", headers=no_scope)).status_code == 403

    assert (await apps.pipeline.delete(url, headers=headers | {"If-Match": '"3"'})).status_code == 204
    assert (await apps.pipeline.get(url, headers=headers)).status_code == 404


async def test_an_interaction_becomes_one_activity_on_each_open_deal_of_its_contact_even_if_delivered_twice(
    apps: Apps, infra: InfraSettings
) -> None:
    ws = workspace()
    headers = sales(infra, ws)
    stage = await seed_stage(apps.db, ws)
    contact = uuid7()
    as_primary = await seed_deal(apps.db, ws, stage, contact)
    as_participant = await seed_deal(apps.db, ws, stage, uuid7(), participants=(contact,))
    won = await seed_deal(apps.db, ws, stage, contact, status="won")
    elsewhere = await seed_deal(apps.db, ws, stage, uuid7())
    at = datetime.now(UTC) - timedelta(minutes=5)
    event = interaction_event(
        ws, str(contact), f"i-{contact}", at, subject="Pricing?", text="How much for 50?"
    )
    # The same event twice, and the same interaction again under another event id (a replay).
    await publish(
        infra, [event, event, interaction_event(ws, str(contact), f"i-{contact}", at, subject="Pricing?")]
    )

    async def linked() -> bool:
        found = await apps.db.fetchval("SELECT count(*) FROM activities WHERE workspace_id = $1", ws)
        return bool(found >= 2)

    await eventually(linked, what="the interaction's activities")
    await eventually(lambda: _counted(apps, headers, contact), what="the interaction counted")
    rows = await apps.db.fetch(
        "SELECT deal_id, kind, subject, body, contact_id, direction, completed_at"
        " FROM activities WHERE workspace_id = $1 ORDER BY deal_id",
        ws,
    )
    assert sorted(r["deal_id"] for r in rows) == sorted([as_primary, as_participant])
    for row in rows:
        assert (row["kind"], row["subject"], row["body"], row["contact_id"], row["direction"]) == (
            "email",
            "Pricing?",
            "How much for 50?",
            contact,
            "inbound",
        )
        assert abs(row["completed_at"] - at) < timedelta(milliseconds=1)
    last = {
        r["id"]: r["last_activity_at"]
        for r in await apps.db.fetch(
            "SELECT id, last_activity_at FROM deals WHERE id = ANY($1::uuid[])",
            [as_primary, as_participant, won, elsewhere],
        )
    }
    assert abs(last[as_primary] - at) < timedelta(milliseconds=1)
    assert abs(last[as_participant] - at) < timedelta(milliseconds=1)
    assert (last[won], last[elsewhere]) == (None, None)
    timeline = await apps.pipeline.get(f"/v1/deals/{as_primary}/activities", headers=headers)
    [entry] = timeline.json()["items"]
    assert (entry["kind"], entry["interaction_id"], entry["done"]) == ("email", f"i-{contact}", True)
    read_only = await apps.pipeline.patch(
        f"/v1/activities/{entry['id']}", headers=headers | {"If-Match": '"1"'}, json={"subject": "edited"}
    )
    assert read_only.status_code == 409


async def _counted(apps: Apps, headers: dict[str, str], contact: UUID) -> bool:
    response = await apps.pipeline.get(f"/v1/contacts/{contact}/activity", headers=headers)
    return response.status_code == 200


async def test_a_quiet_deal_rots_once_per_episode_across_restarts_and_an_activity_ends_the_episode(
    apps: Apps, infra: InfraSettings, events: PipelineEvents
) -> None:
    ws = workspace()
    stage = await seed_stage(apps.db, ws, rotting_days=3)
    now = datetime.now(UTC)
    quiet = await seed_deal(
        apps.db, ws, stage, None, entered=now - timedelta(days=10), last_activity=now - timedelta(days=5)
    )
    fresh = await seed_deal(
        apps.db, ws, stage, None, entered=now - timedelta(days=10), last_activity=now - timedelta(days=1)
    )
    just_moved = await seed_deal(
        apps.db, ws, stage, None, entered=now - timedelta(days=1), last_activity=now - timedelta(days=9)
    )
    closed = await seed_deal(apps.db, ws, stage, None, status="lost", entered=now - timedelta(days=30))
    never = await seed_deal(
        apps.db, ws, await seed_stage(apps.db, ws), None, entered=now - timedelta(days=300)
    )

    [rotting] = await events.wait_for(DEAL_ROTTING, str(quiet), 1)
    message = rotting.payload
    assert (message.deal_id, message.stage_id, message.rotting_days, message.owner_id) == (
        str(quiet),
        str(stage[1]),
        3,
        "rep-1",
    )
    since = message.quiet_since.ToDatetime(tzinfo=UTC)
    assert abs(since - (now - timedelta(days=5))) < timedelta(milliseconds=1)
    assert message.rotting_since.ToDatetime(tzinfo=UTC) == since + timedelta(days=3)

    # A restarted (or another) watcher on the same database announces nothing again.
    assert await RottingWatch(PgDatabase(apps.db)).check() == 0
    await events.settle(2)
    assert len(events.of(DEAL_ROTTING, str(quiet))) == 1
    for other in (fresh, just_moved, closed, never):
        assert events.of(DEAL_ROTTING, str(other)) == []

    # An activity ends the episode; quiet for long enough again, the deal rots again, once.
    note = await apps.pipeline.post(
        "/v1/activities",
        headers=sales(infra, ws),
        json={"kind": "note", "body": "Chased them", "deal_id": str(quiet)},
    )
    assert note.status_code == 201
    await events.settle(1.5)
    assert len(events.of(DEAL_ROTTING, str(quiet))) == 1
    await apps.db.execute(
        "UPDATE deals SET last_activity_at = now() - interval '4 days' WHERE id = $1", quiet
    )
    await events.wait_for(DEAL_ROTTING, str(quiet), 2)
    await events.settle(1.5)
    assert len(events.of(DEAL_ROTTING, str(quiet))) == 2


async def test_a_merge_repoints_deals_participants_and_activities_to_the_survivor(
    apps: Apps, infra: InfraSettings
) -> None:
    ws = workspace()
    stage = await seed_stage(apps.db, ws)
    loser, survivor = uuid7(), uuid7()
    primary = await seed_deal(apps.db, ws, stage, loser)
    both = await seed_deal(apps.db, ws, stage, uuid7(), participants=(loser, survivor))
    only_loser = await seed_deal(apps.db, ws, stage, uuid7(), participants=(loser,))
    await publish(infra, [interaction_event(ws, str(loser), f"i-{loser}-1", datetime.now(UTC))])

    async def recorded() -> bool:
        return bool(
            await apps.db.fetchval("SELECT count(*) FROM activities WHERE contact_id = $1", loser) == 3
        )

    await eventually(recorded, what="the loser's activities")
    await publish(infra, [contact_merged_event(ws, str(loser), str(survivor))])

    async def moved() -> bool:
        return bool(await apps.db.fetchval("SELECT contact_id FROM deals WHERE id = $1", primary) == survivor)

    await eventually(moved, what="the deal re-pointed")
    assert await apps.db.fetchval("SELECT count(*) FROM activities WHERE contact_id = $1", loser) == 0
    assert await apps.db.fetchval("SELECT count(*) FROM activities WHERE contact_id = $1", survivor) == 3
    assert await apps.db.fetchval("SELECT version FROM deals WHERE id = $1", primary) == 2
    participants = await apps.db.fetch(
        "SELECT deal_id, contact_id FROM deal_participants WHERE workspace_id = $1 ORDER BY deal_id", ws
    )
    assert sorted((r["deal_id"], r["contact_id"]) for r in participants) == sorted(
        [(both, survivor), (only_loser, survivor)]
    )

    # An interaction still addressed to the loser lands on the survivor's open deals.
    await publish(infra, [interaction_event(ws, str(loser), f"i-{loser}-2", datetime.now(UTC))])

    async def redirected() -> bool:
        return bool(
            await apps.db.fetchval(
                "SELECT count(*) FROM activities WHERE interaction_id = $1 AND contact_id = $2",
                f"i-{loser}-2",
                survivor,
            )
            == 3
        )

    await eventually(redirected, what="the later interaction on the survivor's deals")

    # The survivor's data export holds their activities.
    part = await export_personal_data(apps.grpc_port, service_token_for(infra, ws), [str(survivor)])
    exported = json.loads(part.json)["activities"]
    assert sorted((a["interaction_id"], a["contact_id"]) for a in exported) == sorted(
        [(f"i-{loser}-{n}", str(survivor)) for n in (1, 2) for _ in range(3)]
    )


async def test_an_erased_persons_activities_and_deal_links_go_and_contacts_hears_so(
    apps: Apps, infra: InfraSettings
) -> None:
    ws = workspace()
    headers = sales(infra, ws)
    name = f"Grace{secrets.token_hex(4)}"
    contact = await new_contact(apps, infra, ws, name)
    bystander = await new_contact(apps, infra, ws, f"Alan{secrets.token_hex(3)}")
    stage = await seed_stage(apps.db, ws)
    deal = await seed_deal(apps.db, ws, stage, UUID(contact))
    theirs = await seed_deal(apps.db, ws, stage, UUID(bystander), participants=(UUID(contact),))
    await publish(
        infra,
        [
            interaction_event(
                ws, contact, f"i-{contact}", datetime.now(UTC), subject=f"From {name}", text=f"I am {name}"
            )
        ],
    )
    for body in (
        {"kind": "call", "subject": f"Call {name}", "body": f"{name} wants 50", "contact_id": contact},
        {"kind": "note", "body": f"{name} is the buyer", "deal_id": str(deal)},
        {"kind": "meeting", "subject": f"Demo for {name}", "deal_id": str(deal), "contact_id": contact},
        {"kind": "note", "body": "Alan decides", "deal_id": str(theirs), "contact_id": bystander},
    ):
        created = await apps.pipeline.post("/v1/activities", headers=headers, json=body)
        assert created.status_code == 201, created.text

    async def linked() -> bool:
        return bool(
            await apps.db.fetchval(
                "SELECT count(*) FROM activities WHERE interaction_id = $1", f"i-{contact}"
            )
            == 2
        )

    await eventually(linked, what="the person's interaction on their deals")
    admin = bearer(token_for(infra, ws, roles=("admin",)))
    assert (await apps.contacts.post(f"/v1/contacts/{contact}/erasure", headers=admin)).status_code == 202

    async def confirmed() -> bool:
        status = (await apps.contacts.get(f"/v1/contacts/{contact}/erasure", headers=admin)).json()
        return bool(status["complete"] and "pipeline" in status["confirmed"])

    await eventually(confirmed, what="pipeline's erasure confirmation")

    kept = await apps.db.fetchrow(
        "SELECT contact_id, amount_minor, stage_id, version FROM deals WHERE id = $1", deal
    )
    assert (kept["contact_id"], kept["amount_minor"], kept["stage_id"], kept["version"]) == (
        None,
        500000,
        stage[1],
        2,
    )
    assert (
        await apps.db.fetchval("SELECT count(*) FROM deal_participants WHERE contact_id = $1", UUID(contact))
        == 0
    )
    # On the deals: still on the timeline, without a word of them; about them alone: gone.
    rows = await apps.db.fetch(
        "SELECT kind, subject, body, contact_id FROM activities WHERE deal_id = $1", deal
    )
    assert sorted((r["kind"], r["subject"], r["body"], r["contact_id"]) for r in rows) == [
        ("email", "", "", None),
        ("meeting", "", "", None),
        ("note", "", "", None),
    ]
    assert (
        await apps.db.fetchval(
            "SELECT count(*) FROM activities WHERE workspace_id = $1 AND deal_id IS NULL", ws
        )
        == 0
    )
    assert (
        await apps.db.fetchval("SELECT body FROM activities WHERE deal_id = $1 AND kind = 'note'", theirs)
        == "Alan decides"
    )
    leaks: list[str] = []
    for table in [
        r["tablename"]
        for r in await apps.db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    ]:
        found = await apps.db.fetch(
            f"SELECT t::text AS row FROM {table} t WHERE t::text ILIKE '%' || $1 || '%'",  # noqa: S608
            name,
        )
        leaks.extend(f"{table}: {r['row'][:200]}" for r in found if table not in ("outbox", "outbox_dead"))
    assert leaks == []

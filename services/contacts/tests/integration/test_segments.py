"""Segments against the real PostgreSQL and broker: every leaf kind on real rows, recomputes,
membership events after contact writes, the audience stream over gRPC, and the REST API's
errors, concurrency and tenancy. Contacts are written straight into the database where a test
needs exact control of their columns."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import grpc
import pytest
from aiokafka import AIOKafkaConsumer

from crm.common.v1 import common_pb2
from crm.contacts.v1 import contacts_pb2, events_pb2
from crm_contacts.service.segments import reevaluate_membership
from crm_contacts.settings import Settings
from crmkit.ids import uuid7
from crmkit.kafka import Envelope
from crmkit.postgres import PgDatabase
from crmkit.topics import CONTACTS

from .conftest import Contacts, unique_workspace

pytestmark = pytest.mark.integration

MEMBERSHIP = "crm.contacts.segment.membership_changed.v1"


@pytest.fixture(scope="session")
async def pool(contacts: Contacts) -> AsyncIterator[asyncpg.Pool]:
    database = Settings(infra=contacts.infra).database_name
    pool = await asyncpg.create_pool(contacts.infra.postgres_dsn_for(database), min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


async def add_contact(pool: asyncpg.Pool, ws: str, name: str, *, first_name: str = "", last_name: str = "",
                      owner_id: str | None = None, stage: str = "subscriber", tags: Sequence[str] = (),
                      custom: dict[str, Any] | None = None, count: int = 0, seen: datetime | None = None,
                      created: datetime | None = None, merged_into: UUID | None = None,
                      erased: bool = False, identities: Sequence[tuple[str, str]] = (),
                      consents: Sequence[tuple[str, str, str]] = (), company: UUID | None = None) -> UUID:
    contact_id = uuid7()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO contacts (id, workspace_id, display_name, first_name, last_name, owner_id,"
            " lifecycle_stage, tags, custom, interaction_count, last_seen_at, created_at, merged_into,"
            " erased_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, COALESCE($12, now()),"
            " $13, CASE WHEN $14 THEN now() END)",
            contact_id, ws, name, first_name, last_name, owner_id, stage, list(tags),
            json.dumps(custom or {}), count, seen, created, merged_into, erased,
        )
        await conn.executemany(
            "INSERT INTO identities (workspace_id, kind, value, contact_id) VALUES ($1, $2, $3, $4)",
            [(ws, kind, f"{value}-{contact_id.hex[-10:]}", contact_id) for kind, value in identities])
        await conn.executemany(
            "INSERT INTO consents (workspace_id, contact_id, channel, purpose, status, source, at)"
            " VALUES ($1, $2, $3, $4, $5, 'test', now())",
            [(ws, contact_id, *consent) for consent in consents])
        if company:
            await conn.execute("INSERT INTO contact_companies (workspace_id, contact_id, company_id)"
                               " VALUES ($1, $2, $3)", ws, contact_id, company)
    return contact_id


async def add_company(pool: asyncpg.Pool, ws: str, name: str, industry: str, size: int, domain: str) -> UUID:
    company_id = uuid7()
    await pool.execute("INSERT INTO companies (id, workspace_id, name, industry, size, domains)"
                       " VALUES ($1, $2, $3, $4, $5, $6)", company_id, ws, name, industry, size, [domain])
    return company_id


async def define(pool: asyncpg.Pool, ws: str, key: str, type_: str, options: Sequence[str] = ()) -> None:
    await pool.execute("INSERT INTO field_definitions (workspace_id, entity, key, label, type, options)"
                       " VALUES ($1, 'contact', $2, $2, $3, $4)", ws, key, type_, list(options))


async def create_segment(contacts: Contacts, ws: str, rules: Any, name: str = "segment") -> dict[str, Any]:
    response = await contacts.http.post("/v1/segments", headers=contacts.headers(ws),
                                        json={"name": name, "rules": rules})
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == '"1"'
    body: dict[str, Any] = response.json()
    return body


async def members(contacts: Contacts, ws: str, segment_id: str, limit: int = 100) -> list[str]:
    found: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        response = await contacts.http.get(f"/v1/segments/{segment_id}/members", params=params,
                                           headers=contacts.headers(ws))
        assert response.status_code == 200, response.text
        found.extend(response.json()["items"])
        if response.json()["next_cursor"] is None:
            return found
        params["cursor"] = response.json()["next_cursor"]


async def published(contacts: Contacts, key: str, count: int, prefix: str = "crm.contacts.segment."
                    ) -> list[Envelope]:
    """The first ``count`` events on crm.contacts.v1 with this key and type prefix, in order."""
    consumer = AIOKafkaConsumer(CONTACTS, bootstrap_servers=contacts.infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    found: list[Envelope] = []
    try:
        async with asyncio.timeout(30):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found.extend(e for e in (Envelope.from_record(r.headers, r.value) for r in records
                                             if r.key == key.encode()) if e.type.startswith(prefix))
    finally:
        await consumer.stop()
    return found


async def membership_events(contacts: Contacts, ws: str, contact_id: UUID, count: int
                            ) -> list[events_pb2.SegmentMembershipChanged]:
    found = []
    for envelope in await published(contacts, f"{ws}:{contact_id}", count, MEMBERSHIP):
        message = envelope.parse(events_pb2.SegmentMembershipChanged)
        assert isinstance(message, events_pb2.SegmentMembershipChanged)
        found.append(message)
    return found


@pytest.fixture(scope="module")
async def people(pool: asyncpg.Pool) -> tuple[str, dict[UUID, str]]:
    """One workspace of contacts that differ in every attribute a rule can test."""
    ws = unique_workspace()
    for key, type_, options in [("plan", "enum", ["free", "pro"]), ("seats", "number", []),
                                ("renewal", "date", []), ("topics", "multi_enum", ["ai", "crm", "web"]),
                                ("vip", "boolean", []), ("nickname", "text", [])]:
        await define(pool, ws, key, type_, options)
    acme = await add_company(pool, ws, "Acme", "software", 250, "acme.com")
    shop = await add_company(pool, ws, "Shop", "retail", 20, "shop.io")
    now = datetime.now(UTC)
    soon = (date.today() + timedelta(days=5)).isoformat()
    ada: dict[str, Any] = dict(
        first_name="Ada", last_name="Lovelace", owner_id="u1", stage="customer", tags=["vip", "beta"],
        custom={"plan": "pro", "seats": 12, "renewal": soon, "topics": ["ai", "crm"], "vip": True,
                "nickname": "Countess"},
        count=7, seen=now - timedelta(days=2), identities=[("email", "ada@x.io"), ("whatsapp", "+4470")],
        consents=[("email", "marketing", "granted")], company=acme)
    names = {
        await add_contact(pool, ws, "ada", **ada): "ada",
        await add_contact(
            pool, ws, "bob", first_name="Bob", stage="lead", tags=["beta"], count=1,
            custom={"plan": "free", "seats": 2, "renewal": "2020-01-01", "topics": ["web"], "vip": False},
            seen=now - timedelta(days=100), identities=[("email", "bob@x.io")],
            consents=[("email", "marketing", "withdrawn")], company=shop): "bob",
        await add_contact(pool, ws, "cy", created=datetime(2020, 1, 1, tzinfo=UTC)): "cy",
    }
    # Like ada in every way, but merged away and erased: never members.
    await add_contact(pool, ws, "merged", merged_into=uuid7(), **ada)
    await add_contact(pool, ws, "erased", erased=True, **ada)
    return ws, names


LEAVES: list[tuple[dict[str, Any], set[str]]] = [
    ({"field": "first_name", "op": "eq", "value": "Ada"}, {"ada"}),
    ({"field": "first_name", "op": "is_not_set"}, {"cy"}),
    ({"field": "last_name", "op": "contains", "value": "LOVE"}, {"ada"}),
    ({"field": "display_name", "op": "starts_with", "value": "b"}, {"bob"}),
    ({"field": "owner_id", "op": "ne", "value": "u1"}, {"bob", "cy"}),
    ({"field": "lifecycle_stage", "op": "in", "value": ["lead", "subscriber"]}, {"bob", "cy"}),
    ({"field": "created_at", "op": "lt", "value": "2021-01-01"}, {"cy"}),
    ({"field": "last_seen_at", "op": "within_days", "value": 30}, {"ada"}),
    ({"field": "last_seen_at", "op": "older_than_days", "value": 30}, {"bob"}),
    ({"field": "last_seen_at", "op": "is_not_set"}, {"cy"}),
    ({"field": "interaction_count", "op": "gte", "value": 5}, {"ada"}),
    ({"field": "tags", "op": "has", "value": "VIP"}, {"ada"}),
    ({"field": "tags", "op": "has_any", "value": ["beta", "other"]}, {"ada", "bob"}),
    ({"field": "tags", "op": "has_all", "value": ["vip", "beta"]}, {"ada"}),
    ({"field": "tags", "op": "is_not_set"}, {"cy"}),
    ({"field": "custom.plan", "op": "ne", "value": "pro"}, {"bob", "cy"}),
    ({"field": "custom.seats", "op": "gt", "value": 5}, {"ada"}),
    ({"field": "custom.seats", "op": "lte", "value": 2.5}, {"bob"}),
    ({"field": "custom.renewal", "op": "lt", "value": "2021-01-01"}, {"bob"}),
    ({"field": "custom.renewal", "op": "within_days", "value": 7}, {"ada"}),
    ({"field": "custom.topics", "op": "contains", "value": "ai"}, {"ada"}),
    ({"field": "custom.topics", "op": "contains_any", "value": ["web", "crm"]}, {"ada", "bob"}),
    ({"field": "custom.topics", "op": "contains_all", "value": ["ai", "web"]}, set()),
    ({"field": "custom.topics", "op": "is_not_set"}, {"cy"}),
    ({"field": "custom.vip", "op": "eq", "value": False}, {"bob"}),
    ({"field": "custom.nickname", "op": "starts_with", "value": "count"}, {"ada"}),
    ({"has_identity": "whatsapp"}, {"ada"}),
    ({"has_identity": "email"}, {"ada", "bob"}),
    ({"consent": {"channel": "email", "purpose": "marketing"}}, {"ada"}),
    ({"consent": {"channel": "email", "purpose": "marketing", "status": "withdrawn"}}, {"bob"}),
    ({"not": {"consent": {"channel": "email", "purpose": "marketing"}}}, {"bob", "cy"}),
    ({"field": "company.industry", "op": "eq", "value": "software"}, {"ada"}),
    ({"field": "company.industry", "op": "ne", "value": "software"}, {"bob", "cy"}),
    ({"field": "company.size", "op": "lt", "value": 100}, {"bob"}),
    ({"field": "company.domain", "op": "eq", "value": "Shop.io"}, {"bob"}),
    ({"field": "company.name", "op": "is_not_set"}, {"cy"}),
    ({"any": [{"field": "first_name", "op": "eq", "value": "Bob"}, {"has_identity": "whatsapp"}]},
     {"ada", "bob"}),
    ({"all": [{"field": "tags", "op": "has", "value": "beta"},
              {"not": {"field": "owner_id", "op": "contains", "value": "u"}}]}, {"bob"}),
    ({"all": []}, {"ada", "bob", "cy"}),
]


@pytest.mark.parametrize(("rules", "expected"), LEAVES, ids=[json.dumps(r)[:60] for r, _ in LEAVES])
async def test_each_rule_selects_exactly_the_live_contacts_that_match(
    contacts: Contacts, people: tuple[str, dict[UUID, str]], rules: dict[str, Any], expected: set[str],
) -> None:
    ws, names = people
    segment = await create_segment(contacts, ws, rules)
    assert {names[UUID(m)] for m in await members(contacts, ws, segment["id"], limit=2)} == expected


async def test_a_recompute_makes_the_members_match_the_contacts_again(
    contacts: Contacts, pool: asyncpg.Pool,
) -> None:
    ws = unique_workspace()
    first, second, third = [await add_contact(pool, ws, n, tags=t) for n, t in
                            [("a", ["vip"]), ("b", []), ("c", [])]]
    segment = await create_segment(contacts, ws, {"field": "tags", "op": "has", "value": "vip"})
    assert await members(contacts, ws, segment["id"]) == [str(first)]
    # Written behind the service's back, so no re-evaluation ran.
    await pool.execute("UPDATE contacts SET tags = CASE WHEN id = $1 THEN '{}'::text[] ELSE '{vip}' END"
                       " WHERE workspace_id = $2", first, ws)
    response = await contacts.http.post(f"/v1/segments/{segment['id']}/recompute",
                                        headers=contacts.headers(ws))
    assert response.status_code == 200, response.text
    assert (response.json()["joined"], response.json()["left"]) == (2, 1)
    assert await members(contacts, ws, segment["id"]) == sorted([str(second), str(third)])
    [joined_at_create, left] = await membership_events(contacts, ws, first, 2)
    assert (joined_at_create.member, left.member) == (True, False)
    [joined] = await membership_events(contacts, ws, second, 1)
    assert (joined.segment_id, joined.member) == (segment["id"], True)


async def test_reevaluating_a_changed_contact_moves_it_and_publishes_joined_then_left(
    contacts: Contacts, pool: asyncpg.Pool,
) -> None:
    ws = unique_workspace()
    vips = await create_segment(contacts, ws, {"field": "tags", "op": "has", "value": "vip"})
    others = await create_segment(contacts, ws, {"not": {"field": "tags", "op": "has", "value": "vip"}})
    contact_id = await add_contact(pool, ws, "dana", tags=["vip"])
    db = PgDatabase(pool)
    async with db.unit_of_work() as uow:
        await reevaluate_membership(uow, ws, [contact_id])
    assert await members(contacts, ws, vips["id"]) == [str(contact_id)]
    await pool.execute("UPDATE contacts SET tags = '{}' WHERE id = $1", contact_id)
    async with db.unit_of_work() as uow:
        await reevaluate_membership(uow, ws, [contact_id, contact_id])
    assert await members(contacts, ws, vips["id"]) == []
    events = await membership_events(contacts, ws, contact_id, 3)
    # In commit order; within one re-evaluation by segment id (vips is the older one).
    assert [(e.segment_id, e.member) for e in events] == [
        (vips["id"], True), (vips["id"], False), (others["id"], True)]
    assert {(e.workspace_id, e.contact_id) for e in events} == {(ws, str(contact_id))}


async def test_contact_writes_over_rest_move_memberships(contacts: Contacts) -> None:
    ws = unique_workspace()
    segment = await create_segment(contacts, ws, {"all": [{"field": "tags", "op": "has", "value": "vip"},
                                                          {"has_identity": "email"}]})
    created = await contacts.http.post("/v1/contacts", headers=contacts.headers(ws),
                                       json={"first_name": "Eve", "emails": [f"eve-{uuid7().hex}@x.io"],
                                             "tags": ["VIP"]})
    assert created.status_code == 201, created.text
    contact_id = created.json()["id"]
    assert await members(contacts, ws, segment["id"]) == [contact_id]
    changed = await contacts.http.patch(f"/v1/contacts/{contact_id}", json={"tags": []},
                                        headers={**contacts.headers(ws), "If-Match": created.headers["etag"]})
    assert changed.status_code == 200, changed.text
    assert await members(contacts, ws, segment["id"]) == []
    events = await membership_events(contacts, ws, UUID(contact_id), 2)
    assert [e.member for e in events] == [True, False]


async def test_the_audience_streams_each_member_once_in_id_order_without_the_excluded(
    contacts: Contacts, pool: asyncpg.Pool,
) -> None:
    ws = unique_workspace()
    await pool.execute(
        "INSERT INTO contacts (id, workspace_id, display_name, tags) SELECT gen_random_uuid(), $1, 'p' || n,"
        " CASE WHEN n % 3 = 0 THEN '{a,b}'::text[] ELSE '{a}' END FROM generate_series(1, 1200) n", ws)
    reachable = await add_contact(pool, ws, "reachable", tags=["a"], identities=[("email", "r@x.io")],
                                  consents=[("email", "marketing", "granted")])
    await add_contact(pool, ws, "merged", tags=["a"], merged_into=reachable)
    a = await create_segment(contacts, ws, {"field": "tags", "op": "has", "value": "a"})
    also_a = await create_segment(contacts, ws, {"field": "tags", "op": "has_any", "value": ["a", "z"]})
    b = await create_segment(contacts, ws, {"field": "tags", "op": "has", "value": "b"})
    request = contacts_pb2.StreamSegmentMembersRequest(segment_ids=[a["id"], also_a["id"]],
                                                       exclude_segment_ids=[b["id"]])
    streamed = [m async for m in contacts.stub.StreamSegmentMembers(
        request, timeout=30, metadata=contacts.grpc_metadata(ws))]
    ids = [m.contact.id for m in streamed]
    assert len(ids) == 801  # 800 of the 1200 without tag b, and `reachable`
    assert ids == sorted(ids, key=UUID)
    assert len(set(ids)) == len(ids)
    [member] = [m for m in streamed if m.contact.id == str(reachable)]
    assert [i.kind for i in member.contact.identities] == [common_pb2.IDENTITY_KIND_EMAIL]
    assert [(c.channel, c.purpose, c.status) for c in member.consents] == [("email", "marketing", "granted")]
    # The paged rpc: the same members in the same order, many to a message.
    pages = [p async for p in contacts.stub.StreamSegmentMemberPages(
        request, timeout=30, metadata=contacts.grpc_metadata(ws))]
    assert [m for page in pages for m in page.members] == streamed
    assert 1 < len(pages) < len(streamed)
    for bad, code in [(["nope"], grpc.StatusCode.INVALID_ARGUMENT), ([], grpc.StatusCode.INVALID_ARGUMENT),
                      ([str(uuid7())], grpc.StatusCode.NOT_FOUND)]:
        for rpc in (contacts.stub.StreamSegmentMembers, contacts.stub.StreamSegmentMemberPages):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                request = contacts_pb2.StreamSegmentMembersRequest(segment_ids=bad)
                [m async for m in rpc(request, timeout=10, metadata=contacts.grpc_metadata(ws))]
            assert error.value.code() == code


async def test_bad_rules_answer_422_naming_each_place(contacts: Contacts, pool: asyncpg.Pool) -> None:
    ws = unique_workspace()
    response = await contacts.http.post("/v1/segments", headers=contacts.headers(ws), json={
        "name": " ", "rules": {"all": [{"field": "first_name", "op": "eq", "value": "a"},
                                       {"field": "first_name", "op": "between", "value": 1},
                                       {"field": "custom.plan", "op": "eq", "value": "pro"}]}})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/invalid-segment")
    assert {e["field"] for e in body["errors"]} == {"name", "rules.all[1].op", "rules.all[2].field"}
    for rules in (None, [], "x", {"not": {"not": {"has_identity": 7}}}):
        response = await contacts.http.post("/v1/segments", headers=contacts.headers(ws),
                                            json={"name": "n", "rules": rules})
        assert response.status_code == 422, rules
    # A custom field removed after the segment was made: a recompute says which rule broke.
    await define(pool, ws, "plan", "enum", ["free", "pro"])
    segment = await create_segment(contacts, ws, {"field": "custom.plan", "op": "eq", "value": "pro"})
    await pool.execute("DELETE FROM field_definitions WHERE workspace_id = $1", ws)
    await add_contact(pool, ws, "still fine")  # and contact writes go on
    response = await contacts.http.post(f"/v1/segments/{segment['id']}/recompute",
                                        headers=contacts.headers(ws))
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["rules.field"]


async def test_a_patch_needs_the_current_etag_and_new_rules_recompute(
    contacts: Contacts, pool: asyncpg.Pool,
) -> None:
    ws = unique_workspace()
    lead = await add_contact(pool, ws, "lead", stage="lead")
    segment = await create_segment(contacts, ws, {"field": "lifecycle_stage", "op": "eq",
                                                  "value": "customer"})
    path = f"/v1/segments/{segment['id']}"
    change = {"name": "Leads", "rules": {"field": "lifecycle_stage", "op": "eq", "value": "lead"}}
    missing = await contacts.http.patch(path, json=change, headers=contacts.headers(ws))
    assert missing.status_code == 428
    stale = await contacts.http.patch(path, json=change, headers={**contacts.headers(ws), "If-Match": '"7"'})
    assert stale.status_code == 412
    assert stale.headers["etag"] == '"1"'
    done = await contacts.http.patch(path, json=change, headers={**contacts.headers(ws), "If-Match": '"1"'})
    assert done.status_code == 200, done.text
    assert done.headers["etag"] == '"2"'
    assert done.json()["name"] == "Leads"
    assert await members(contacts, ws, segment["id"]) == [str(lead)]
    again = await contacts.http.patch(path, json={"name": "Old"},
                                      headers={**contacts.headers(ws), "If-Match": '"1"'})
    assert again.status_code == 412
    bad = await contacts.http.patch(path, json={"rules": {"field": "x"}},
                                    headers={**contacts.headers(ws), "If-Match": '"2"'})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"rules.field", "rules.op"}


async def test_segments_list_by_cursor_and_are_deleted(contacts: Contacts) -> None:
    ws = unique_workspace()
    made = [await create_segment(contacts, ws, {"all": []}, name=f"s{n}") for n in range(3)]
    first = (await contacts.http.get("/v1/segments?limit=2", headers=contacts.headers(ws))).json()
    rest = (await contacts.http.get("/v1/segments", params={"limit": 2, "cursor": first["next_cursor"]},
                                    headers=contacts.headers(ws))).json()
    assert [s["id"] for s in first["items"] + rest["items"]] == [s["id"] for s in made]
    assert rest["next_cursor"] is None
    bad = await contacts.http.get("/v1/segments?cursor=forged", headers=contacts.headers(ws))
    assert bad.status_code == 422
    deleted = await contacts.http.delete(f"/v1/segments/{made[0]['id']}", headers=contacts.headers(ws))
    assert deleted.status_code == 204
    gone = await contacts.http.get(f"/v1/segments/{made[0]['id']}", headers=contacts.headers(ws))
    assert gone.status_code == 404
    created, deleted_event = await published(contacts, f"{ws}:{made[0]['id']}", 2)
    assert (created.type, deleted_event.type) == ("crm.contacts.segment.created.v1",
                                                  "crm.contacts.segment.deleted.v1")
    changed = deleted_event.parse(events_pb2.SegmentChanged)
    assert isinstance(changed, events_pb2.SegmentChanged)
    assert (changed.segment.id, changed.segment.name, json.loads(changed.segment.rules_json)) == (
        made[0]["id"], "s0", {"all": []})


async def test_another_workspace_can_neither_see_nor_touch_a_segment(contacts: Contacts) -> None:
    ws = unique_workspace()
    other = f"{ws}-other"  # unique_workspace() repeats itself within one millisecond
    segment = await create_segment(contacts, ws, {"all": []})
    path = f"/v1/segments/{segment['id']}"
    theirs = contacts.headers(other)
    for response in [
        await contacts.http.get(path, headers=theirs),
        await contacts.http.patch(path, json={"name": "x"}, headers={**theirs, "If-Match": '"1"'}),
        await contacts.http.delete(path, headers=theirs),
        await contacts.http.get(f"{path}/members", headers=theirs),
        await contacts.http.post(f"{path}/recompute", headers=theirs),
    ]:
        assert response.status_code == 404, (response.request.method, response.request.url)
    assert (await contacts.http.get("/v1/segments", headers=theirs)).json()["items"] == []
    with pytest.raises(grpc.aio.AioRpcError) as error:
        request = contacts_pb2.StreamSegmentMembersRequest(segment_ids=[segment["id"]])
        [m async for m in contacts.stub.StreamSegmentMembers(request, timeout=10,
                                                             metadata=contacts.grpc_metadata(other))]
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    reader = contacts.headers(ws, roles=("analyst",))
    assert (await contacts.http.post("/v1/segments", headers=reader, json={"name": "n", "rules": {"all": []}})
            ).status_code == 403

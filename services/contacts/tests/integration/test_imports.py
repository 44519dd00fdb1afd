"""CSV imports, exports and the `crm` CLI against real PostgreSQL and the broker."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer

from crm_contacts.domain.imports import FileTooLarge, OnDuplicate
from crm_contacts.domain.model import Identity, IdentityKind
from crm_contacts.main import MIGRATIONS
from crm_contacts.service.imports import ImportsService
from crm_contacts.settings import Settings
from crm_contacts.store import privacy
from crm_contacts.store.contacts import ContactsStore
from crmkit.ids import uuid7
from crmkit.kafka import Envelope
from crmkit.postgres import PgDatabase, PgUnitOfWork, migrate
from crmkit.testing import eventually, free_port, token_for
from crmkit.topics import CONTACTS

from .conftest import Contacts, unique_email, unique_workspace

pytestmark = pytest.mark.integration

FINISHED = ("done", "failed", "cancelled")


def another_workspace() -> str:
    """Never the workspace unique_workspace() gave in the same millisecond."""
    return f"ws-other-{uuid7().hex}"


@pytest.fixture
async def pool(contacts: Contacts) -> AsyncIterator[asyncpg.Pool]:
    """The contacts app's own database."""
    dsn = contacts.infra.postgres_dsn_for(Settings(infra=contacts.infra).database_name)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def define(contacts: Contacts, ws: str, key: str, type_: str, options: list[str] | None = None) -> None:
    response = await contacts.http.post("/v1/fields", headers=contacts.headers(ws), json={
        "key": key, "label": key.title(), "type": type_, "options": options or []})
    assert response.status_code == 201, response.text


async def create(contacts: Contacts, ws: str, **body: Any) -> dict[str, Any]:
    response = await contacts.http.post("/v1/contacts", headers=contacts.headers(ws), json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def start(contacts: Contacts, ws: str, mapping: dict[str, str], text: str, **options: Any
                ) -> dict[str, Any]:
    response = await contacts.http.post("/v1/imports", headers=contacts.headers(ws),
                                        json={"mapping": mapping, **options})
    assert response.status_code == 201, response.text
    upload = await contacts.http.put(response.json()["upload"]["url"], content=text.encode(),
                                     headers={**contacts.headers(ws), "Content-Type": "text/csv"})
    assert upload.status_code == 202, upload.text
    job: dict[str, Any] = upload.json()
    return job


async def finished(contacts: Contacts, ws: str, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def done() -> bool:
        found.update((await contacts.http.get(f"/v1/imports/{job_id}", headers=contacts.headers(ws))).json())
        return found["status"] in FINISHED

    await eventually(done, timeout=60, what=f"import {job_id} to finish")
    return found


async def run(contacts: Contacts, ws: str, mapping: dict[str, str], text: str, **options: Any
              ) -> dict[str, Any]:
    return await finished(contacts, ws, (await start(contacts, ws, mapping, text, **options))["id"])


async def error_report(contacts: Contacts, ws: str, job_id: str) -> list[list[str]]:
    response = await contacts.http.get(f"/v1/imports/{job_id}/errors.csv", headers=contacts.headers(ws))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.text)))


async def by_email(contacts: Contacts, ws: str) -> dict[str, dict[str, Any]]:
    response = await contacts.http.get("/v1/contacts?limit=100", headers=contacts.headers(ws))
    return {email: c for c in response.json()["items"] for email in c["emails"]}


async def test_good_rows_import_and_bad_rows_are_reported_by_row_and_column(
    contacts: Contacts, pool: asyncpg.Pool,
) -> None:
    ws = unique_workspace()
    await define(contacts, ws, "plan", "enum", ["free", "pro"])
    await define(contacts, ws, "seats", "number")
    acme = (await contacts.http.post("/v1/companies", headers=contacts.headers(ws),
                                     json={"name": "Acme Ltd"})).json()
    text = ("E-mail,First,Phone,Plan,Seats,Tags,Company,Stage,Notes\n"
            "ada@example.com|ada.work@example.com,Ada,020 7946 0001,pro,12,VIP;newsletter,ACME LTD,"
            "Customer,x\n"
            "not-an-email,Bob,,free,3,,,lead,\n"
            "cy@example.com,Cy,,gold,many,,Globex,,\n"
            ",Nobody,,,,,,,\n"
            "\n"
            "\"dee@example.com\",\"Dee, the \"\"second\"\"\",,free,1.5,,globex,evangelist,\"two\nlines\"\n")
    mapping = {"E-mail": "emails", "First": "first_name", "Phone": "phones", "Plan": "custom_fields.plan",
               "Seats": "custom_fields.seats", "Tags": "tags", "Company": "company",
               "Stage": "lifecycle_stage"}
    job = await run(contacts, ws, mapping, text, region="GB")

    assert (job["status"], job["total"], job["position"], job["progress"]) == ("done", 5, 5, 100.0)
    counts = (job["created"], job["updated"], job["skipped"], job["failed"], job["error_rows"])
    assert counts == (2, 0, 0, 3, 3)
    assert await error_report(contacts, ws, job["id"]) == [
        ["row", "field", "message"],
        ["3", "E-mail", "emails: not an email address"],
        ["4", "Plan", "custom_fields.plan: one of free, pro"],
        ["4", "Seats", "custom_fields.seats: not a number"],
        ["5", "", "the row has no email, phone or other identity to match it by"],
    ]
    people = await by_email(contacts, ws)
    ada, dee = people["ada@example.com"], people["dee@example.com"]
    assert sorted(ada["emails"]) == ["ada.work@example.com", "ada@example.com"]
    assert ada["phones"] == ["+442079460001"]
    assert (ada["first_name"], ada["lifecycle_stage"]) == ("Ada", "customer")
    assert ada["tags"] == ["newsletter", "vip"]
    assert ada["custom_fields"] == {"plan": "pro", "seats": 12}
    assert [c["company_id"] for c in ada["companies"]] == [acme["id"]]  # found case-insensitively
    assert dee["first_name"] == 'Dee, the "second"'
    assert dee["custom_fields"] == {"plan": "free", "seats": 1.5}
    companies = (await contacts.http.get("/v1/companies", headers=contacts.headers(ws))).json()["items"]
    assert sorted(c["name"] for c in companies) == ["Acme Ltd", "globex"]  # made once, on first sight

    audit = (await contacts.http.get(f"/v1/contacts/{ada['id']}/audit", headers=contacts.headers(ws))).json()
    assert [(e["action"], e["actor"]) for e in audit["items"]] == [("create", f"import:{job['id']}")]
    async with pool.acquire() as conn:  # the import wrote the words a refresh writes
        transaction = conn.transaction()
        await transaction.start()
        ids = [UUID(ada["id"]), UUID(dee["id"])]
        written = await conn.fetch("SELECT search_text FROM contacts WHERE id = ANY($1) ORDER BY id", ids)
        await ContactsStore(conn).refresh_search(ids)
        fresh = await conn.fetch("SELECT search_text FROM contacts WHERE id = ANY($1) ORDER BY id", ids)
        await transaction.rollback()
    assert [sorted(r[0].split()) for r in written] == [sorted(r[0].split()) for r in fresh]
    assert await created_events(contacts, f"{ws}:{ada['id']}") == 1


async def created_events(contacts: Contacts, key: str) -> int:
    consumer = AIOKafkaConsumer(CONTACTS, bootstrap_servers=contacts.infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    found: list[Envelope] = []
    try:
        async with asyncio.timeout(30):
            while not found:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [Envelope.from_record(r.headers, r.value) for r in records
                              if r.key == key.encode()]
    finally:
        await consumer.stop()
    return sum(e.type.endswith("contact.created.v1") for e in found)


async def test_skip_leaves_known_people_alone_and_keeps_the_first_of_a_file(contacts: Contacts) -> None:
    ws = unique_workspace()
    known = await create(contacts, ws, first_name="Old", emails=["known@example.com"])
    text = ("email,first\nknown@example.com,New\nfresh@example.com,One\nFRESH@example.com,Two\n"
            "other@example.com,Three\n")
    job = await run(contacts, ws, {"email": "emails", "first": "first_name"}, text, on_duplicate="skip")
    assert (job["created"], job["updated"], job["skipped"], job["failed"]) == (2, 0, 2, 0)
    people = await by_email(contacts, ws)
    assert people["known@example.com"]["first_name"] == "Old"
    assert people["known@example.com"]["version"] == known["version"]
    assert people["fresh@example.com"]["first_name"] == "One"
    assert len(people) == 3


async def test_update_fills_in_what_rows_give_and_merges_a_file_s_repeats(contacts: Contacts) -> None:
    ws = unique_workspace()
    await define(contacts, ws, "plan", "text")
    known = await create(contacts, ws, first_name="Old", last_name="Name", emails=["known@example.com"],
                         tags=["old"], custom_fields={"plan": "basic"})
    other = await create(contacts, ws, emails=["other@example.com"])
    text = ("email,phone,first,tags,plan\n"
            "known@example.com,+442079460002,New,new,\n"
            "fresh@example.com,,Fresh,,pro\n"
            "+ignored-cell,,,,\n"
            "fresh@example.com,,Fresh,,team\n"
            "known@example.com,,New,,\n"
            "known@example.com|other@example.com,,Both,,\n")
    mapping = {"email": "emails", "phone": "phones", "first": "first_name", "tags": "tags",
               "plan": "custom_fields.plan"}
    job = await run(contacts, ws, mapping, text, on_duplicate="update")
    assert (job["created"], job["updated"], job["skipped"], job["failed"]) == (1, 2, 1, 2)
    report = await error_report(contacts, ws, job["id"])
    assert report[2] == ["7", "", "the row's identities belong to different contacts: "
                                  f"{known['id']}, {other['id']}"]
    people = await by_email(contacts, ws)
    updated = people["known@example.com"]
    names = (updated["first_name"], updated["last_name"], updated["display_name"])
    assert names == ("New", "Name", "New Name")
    assert updated["tags"] == ["new", "old"]
    assert updated["custom_fields"] == {"plan": "basic"}
    assert updated["phones"] == ["+442079460002"]
    assert updated["version"] == known["version"] + 1
    assert people["fresh@example.com"]["custom_fields"] == {"plan": "team"}  # the later row wins
    assert people["other@example.com"]["version"] == other["version"]


async def test_create_refuses_rows_whose_identity_is_known_in_the_workspace_or_earlier_in_the_file(
    contacts: Contacts,
) -> None:
    ws = unique_workspace()
    known = await create(contacts, ws, emails=["known@example.com"])
    text = "email\nknown@example.com\nfresh@example.com\nfresh@example.com\nnew@example.com\n"
    job = await run(contacts, ws, {"email": "emails"}, text, on_duplicate="create")
    assert (job["created"], job["updated"], job["skipped"], job["failed"]) == (2, 0, 0, 2)
    assert (await error_report(contacts, ws, job["id"]))[1:] == [
        ["2", "email", f"an email of this row already belongs to contact {known['id']}"],
        ["4", "email", "an email of this row is already in row 3 of this file"],
    ]


async def test_custom_fields_and_tags_land_typed(contacts: Contacts) -> None:
    ws = unique_workspace()
    for key, kind, options in (("seats", "number", None), ("score", "number", None), ("vip", "boolean", None),
                               ("since", "date", None), ("topics", "multi_enum", ["a", "b", "c"])):
        await define(contacts, ws, key, kind, options)
    text = ("mail,seats,score,vip,since,topics,tags,telegram\n"
            "t@example.com,7,2.5,yes,2024-02-29,c|a,Gold,@ada_t\n")
    mapping = {"mail": "emails", "seats": "custom_fields.seats", "score": "custom_fields.score",
               "vip": "custom_fields.vip", "since": "custom_fields.since", "topics": "custom_fields.topics",
               "tags": "tags", "telegram": "identities.telegram"}
    job = await run(contacts, ws, mapping, text)
    assert job["created"] == 1, await error_report(contacts, ws, job["id"])
    person = (await by_email(contacts, ws))["t@example.com"]
    assert person["custom_fields"] == {"seats": 7, "score": 2.5, "vip": True, "since": "2024-02-29",
                                       "topics": ["c", "a"]}
    assert person["tags"] == ["gold"]
    assert {"kind": "telegram", "value": "@ada_t"} in person["identities"]


async def test_identities_of_erased_people_are_never_created(contacts: Contacts, pool: asyncpg.Pool) -> None:
    ws = unique_workspace()
    gone = unique_email()
    async with pool.acquire() as conn:
        await privacy.suppress(conn, ws, [Identity(IdentityKind.EMAIL, gone)], "erased")
    job = await run(contacts, ws, {"email": "emails"}, f"email\n{gone.upper()}\nkept@example.com\n",
                    on_duplicate="update")
    assert (job["created"], job["skipped"], job["failed"], job["error_rows"]) == (1, 1, 0, 1)
    assert (await error_report(contacts, ws, job["id"]))[1:] == [["2", "email", "suppressed (erased person)"]]
    assert list(await by_email(contacts, ws)) == ["kept@example.com"]


class CrashingDatabase(PgDatabase):
    """Units of work that fail when the Nth event is added: a crash in the middle of a batch,
    after its contacts and identities were written."""

    def __init__(self, pool: asyncpg.Pool, crash_at_event: int) -> None:
        super().__init__(pool)
        self.left = crash_at_event

    def unit_of_work(self) -> Any:
        database = self
        real = super().unit_of_work()

        class Crashing:
            async def __aenter__(self) -> PgUnitOfWork:
                uow = await real.__aenter__()
                add = uow.add

                def crashing_add(event: Any) -> None:
                    database.left -= 1
                    if database.left == 0:
                        raise RuntimeError("the process dies here")
                    add(event)

                uow.add = crashing_add  # type: ignore[method-assign]
                return uow

            async def __aexit__(self, *exc: Any) -> Any:
                return await real.__aexit__(*exc)

        return Crashing()


@pytest.fixture
async def own_database(contacts: Contacts) -> AsyncIterator[str]:
    """A contacts database of the test's own: no app worker applies its jobs."""
    name = f"{contacts.infra.database_prefix}contacts_resume"
    admin = await asyncpg.connect(contacts.infra.postgres_dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = contacts.infra.postgres_dsn_for(name)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    await migrate(pool, MIGRATIONS)
    await pool.close()
    yield dsn
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def chunks(text: str, size: int = 7) -> AsyncIterator[bytes]:
    data = text.encode()
    for start in range(0, len(data), size):  # small chunks: records cross chunk borders
        yield data[start:start + size]


async def test_an_import_resumes_after_a_crash_without_duplicates_or_lost_rows(own_database: str) -> None:
    lines = [f"p{n % 37}@example.com,Name {n},+44207946{n % 37:04d}" for n in range(60)]
    lines[17] = "broken,Bad,"
    text = "email,name,phone\n" + "\n".join(lines) + "\n"
    mapping = {"email": "emails", "name": "first_name", "phone": "phones"}
    pool = await asyncpg.create_pool(own_database, min_size=1, max_size=3)

    async def import_into(ws: str, db: PgDatabase) -> UUID:
        service = ImportsService(db, max_bytes=10**6, batch_size=10)
        job = await service.create_job(ws, "tester", mapping, OnDuplicate.UPDATE, "GB")
        await service.upload(ws, job.id, chunks(text))
        return job.id

    try:
        reference = await import_into("ws-reference", PgDatabase(pool))
        while await ImportsService(PgDatabase(pool), max_bytes=0, batch_size=10).apply_next_batch():
            pass
        crashing = CrashingDatabase(pool, crash_at_event=15)  # in the second batch
        job_id = await import_into("ws-crash", crashing)
        service = ImportsService(crashing, max_bytes=10**6, batch_size=10)
        assert await service.apply_next_batch()
        with pytest.raises(Exception, match="after row 11"):
            await service.apply_next_batch()
        half = await service.get("ws-crash", job_id)
        assert (half.status.value, half.position, half.last_row) == ("running", 10, 11)

        restarted = ImportsService(PgDatabase(pool), max_bytes=10**6, batch_size=10)
        while await restarted.apply_next_batch():
            pass
        done = await restarted.get("ws-crash", job_id)
        expected = await restarted.get("ws-reference", reference)
        assert done.status.value == "done"
        assert done.position == done.total_rows == 60
        counts = ("created", "updated", "skipped", "failed", "error_rows")
        assert [getattr(done, c) for c in counts] == [getattr(expected, c) for c in counts]
        async with pool.acquire() as conn:
            state = {}
            for ws in ("ws-crash", "ws-reference"):
                state[ws] = [tuple(r) for r in await conn.fetch(
                    "SELECT c.first_name, c.version,"
                    " array_agg(i.kind || ':' || i.value ORDER BY i.kind, i.value),"
                    " (SELECT count(*) FROM audit_log a WHERE a.entity_id = c.id::text),"
                    " (SELECT count(*) FROM outbox o WHERE o.key = c.workspace_id || ':' || c.id)"
                    " FROM contacts c JOIN identities i ON i.contact_id = c.id WHERE c.workspace_id = $1"
                    " GROUP BY c.id ORDER BY 3", ws)]
            errors = [await conn.fetch("SELECT row_no, field, message FROM import_errors WHERE job_id = $1"
                                       " ORDER BY row_no", j) for j in (job_id, reference)]
        assert len(state["ws-crash"]) == 37
        assert state["ws-crash"] == state["ws-reference"]  # every contact once, each event once
        assert [tuple(r) for r in errors[0]] == [tuple(r) for r in errors[1]] == [
            (19, "email", "emails: not an email address")]
    finally:
        await pool.close()


async def test_a_file_past_the_limit_stages_nothing(own_database: str) -> None:
    pool = await asyncpg.create_pool(own_database, min_size=1, max_size=2)
    try:
        service = ImportsService(PgDatabase(pool), max_bytes=100, batch_size=10)
        job = await service.create_job("ws-big", "tester", {"email": "emails"}, OnDuplicate.SKIP, None)
        with pytest.raises(FileTooLarge):
            await service.upload("ws-big", job.id, chunks("email\n" + "a@example.com\n" * 20, size=30))
        assert (await service.get("ws-big", job.id)).status.value == "awaiting_upload"
        assert await pool.fetchval("SELECT count(*) FROM import_rows WHERE job_id = $1", job.id) == 0
    finally:
        await pool.close()


async def test_bad_requests_are_problems_naming_what_is_wrong(contacts: Contacts) -> None:
    ws = unique_workspace()
    headers = contacts.headers(ws)
    bad = await contacts.http.post("/v1/imports", headers=headers, json={"mapping": {
        "E-mail": "emails", "Plan": "custom_fields.plan", "X": "favourite_colour"}})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in bad.json()["errors"]] == ["mapping.Plan", "mapping.X"]
    assert "no such custom field" in bad.json()["errors"][0]["message"]
    no_identity = await contacts.http.post("/v1/imports", headers=headers,
                                           json={"mapping": {"F": "first_name"}})
    assert no_identity.status_code == 422
    mode = await contacts.http.post("/v1/imports", headers=headers,
                                    json={"mapping": {"e": "emails"}, "on_duplicate": "merge"})
    assert mode.status_code == 422

    async def upload(content: bytes, **extra: str) -> Any:
        job = await contacts.http.post("/v1/imports", headers=headers, json={"mapping": {"E-mail": "emails"}})
        return await contacts.http.put(job.json()["upload"]["url"], content=content,
                                       headers={**headers, "Content-Type": "text/csv", **extra})

    missing = await upload(b"email\na@example.com\n")
    assert missing.status_code == 422
    assert "no column 'E-mail'" in missing.json()["detail"]
    assert (await upload(b"E-mail\n\xff\xfe\n")).json()["detail"] == "the file is not UTF-8 text"
    assert (await upload(b'E-mail\n"open quote\n')).status_code == 422
    assert (await upload(b"E-mail\n", **{"Content-Type": "application/json"})).status_code == 415
    too_big = await upload(b"E-mail\n", **{"Content-Length": str(10**12)})
    assert too_big.status_code == 413
    assert too_big.json()["max_bytes"] == 200 * 1024 * 1024
    job = await start(contacts, ws, {"e": "emails"}, "e\nonce@example.com\n")
    again = await contacts.http.put(f"/v1/imports/{job['id']}/file", content=b"e\n",
                                    headers={**headers, "Content-Type": "text/csv"})
    assert again.status_code == 409
    assert (await contacts.http.get("/v1/imports?cursor=nonsense", headers=headers)).status_code == 422


async def test_another_workspace_sees_none_of_an_import(contacts: Contacts) -> None:
    ws, intruder = unique_workspace(), contacts.headers(another_workspace())
    job = await run(contacts, ws, {"e": "emails"}, "e\nmine@example.com\n")
    for method, path in (("GET", ""), ("GET", "/errors.csv"), ("POST", "/cancel"), ("PUT", "/file")):
        response = await contacts.http.request(method, f"/v1/imports/{job['id']}{path}", headers={
            **intruder, "Content-Type": "text/csv"}, content=b"e\n")
        assert response.status_code == 404, (method, path)
    assert (await contacts.http.get("/v1/imports", headers=intruder)).json()["items"] == []
    reader = contacts.headers(ws, roles=("analyst",))
    assert (await contacts.http.post("/v1/imports", headers=reader, json={"mapping": {"e": "emails"}})
            ).status_code == 403
    assert (await contacts.http.get(f"/v1/imports/{job['id']}", headers=reader)).status_code == 200


async def test_jobs_are_listed_newest_first_by_cursor_and_can_be_cancelled(contacts: Contacts) -> None:
    ws = unique_workspace()
    headers = contacts.headers(ws)
    done = await run(contacts, ws, {"e": "emails"}, "e\na@example.com\n")
    waiting = (await contacts.http.post("/v1/imports", headers=headers,
                                        json={"mapping": {"e": "emails"}})).json()
    cancelled = await contacts.http.post(f"/v1/imports/{waiting['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert (await contacts.http.post(f"/v1/imports/{done['id']}/cancel", headers=headers)).status_code == 409
    first = (await contacts.http.get("/v1/imports?limit=1", headers=headers)).json()
    second = (await contacts.http.get(f"/v1/imports?limit=1&cursor={first['next_cursor']}",
                                      headers=headers)).json()
    assert [first["items"][0]["id"], second["items"][0]["id"]] == [waiting["id"], done["id"]]
    assert second["next_cursor"] is None


async def test_exports_stream_live_contacts_of_a_filter_or_a_segment(contacts: Contacts, pool: asyncpg.Pool
                                                                     ) -> None:
    ws = unique_workspace()
    headers = contacts.headers(ws)
    await define(contacts, ws, "plan", "text")
    text = ("email,first,tags,stage,plan,company\n" + "".join(
        f"p{n}@example.com,=cmd{n},{'vip' if n % 2 else 'other'},{'lead' if n < 3 else 'customer'},p{n},"
        f"Co {n % 2}\n" for n in range(6)))
    await run(contacts, ws, {"email": "emails", "first": "first_name", "tags": "tags",
                             "stage": "lifecycle_stage", "plan": "custom_fields.plan", "company": "company"},
              text)
    people = await by_email(contacts, ws)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE contacts SET erased_at = now() WHERE id = $1",
                           UUID(people["p1@example.com"]["id"]))
        segment = await conn.fetchval("INSERT INTO segments (id, workspace_id, name, rules)"
                                      " VALUES (gen_random_uuid(), $1, 'picked', '{}') RETURNING id", ws)
        await conn.executemany("INSERT INTO segment_members (segment_id, contact_id) VALUES ($1, $2)",
                               [(segment, UUID(people[f"p{n}@example.com"]["id"])) for n in (0, 1, 4)])

    response = await contacts.http.get("/v1/contacts/export?format=csv&tag=vip", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["emails"] for r in rows] == ["p3@example.com", "p5@example.com"]  # p1 is erased
    assert list(rows[0])[:11] == ["id", "first_name", "last_name", "display_name", "emails", "phones",
                                  "identities", "lifecycle_stage", "owner_id", "tags", "companies"]
    assert list(rows[0])[11:] == ["custom_fields.plan", "created_at", "updated_at"]
    first = rows[0]
    assert (first["first_name"], first["custom_fields.plan"], first["companies"]) == ("'=cmd3", "p3", "Co 1")

    ndjson = await contacts.http.get("/v1/contacts/export?format=ndjson&lifecycle_stage=lead",
                                     headers=headers)
    assert ndjson.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in ndjson.text.splitlines()]
    assert [line["emails"] for line in lines] == [["p0@example.com"], ["p2@example.com"]]
    assert lines[0]["custom_fields"] == {"plan": "p0"}
    assert lines[0]["first_name"] == "=cmd0"

    members = await contacts.http.get(f"/v1/contacts/export?format=ndjson&segment_id={segment}",
                                      headers=headers)
    assert [json.loads(line)["emails"][0] for line in members.text.splitlines()] == [
        "p0@example.com", "p4@example.com"]
    elsewhere = contacts.headers(another_workspace())
    assert (await contacts.http.get(f"/v1/contacts/export?segment_id={segment}", headers=elsewhere)
            ).status_code == 404
    assert (await contacts.http.get("/v1/contacts/export?format=xml", headers=headers)).status_code == 422


@pytest.fixture
async def served(contacts: Contacts) -> AsyncIterator[str]:
    """The session's contacts app, also on a real HTTP port, for the CLI."""
    app = contacts.http._transport.app  # type: ignore[attr-defined]
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually(started, timeout=10, what="the HTTP server")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def crm(url: str, token: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "CRM_API_URL": url, "CRM_TOKEN": token, "COLUMNS": "200", "NO_COLOR": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crm_contacts.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_the_cli_imports_and_exports_through_the_running_api(
    contacts: Contacts, served: str, tmp_path: Path,
) -> None:
    ws = unique_workspace()
    token = token_for(contacts.infra, ws)
    await define(contacts, ws, "plan", "text")
    people = tmp_path / "people.csv"
    people.write_text("E-mail,First,Plan\na@example.com,Ann,pro\nbad-email,Bo,free\nb@example.com,Bea,\n")
    code, stdout, stderr = await crm(served, token, "import", str(people), "--map", "E-mail=emails",
                                     "--map", "First=first_name", "-m", "Plan=custom_fields.plan",
                                     "--on-duplicate", "update")
    assert code == 0, stderr
    assert "done" in stdout
    assert "3 rows queued" in stderr
    report = tmp_path / "people.errors.csv"
    assert report.read_text().splitlines() == ["row,field,message", "3,E-mail,emails: not an email address"]

    out = tmp_path / "contacts.ndjson"
    code, _, stderr = await crm(served, token, "export", "--format", "ndjson", "-o", str(out))
    assert code == 0, stderr
    assert "exported 2 contacts" in stderr
    assert sorted(json.loads(line)["emails"][0] for line in out.read_text().splitlines()) == [
        "a@example.com", "b@example.com"]
    code, stdout, _ = await crm(served, token, "jobs")
    assert code == 0
    assert "done" in stdout

    code, _, stderr = await crm(served, token, "import", str(people), "--map", "E-mail=nowhere")
    assert code == 1
    assert "mapping.E-mail" in stderr
    assert "not an import target" in stderr
    code, _, stderr = await crm(served, "not-a-token", "jobs")
    assert code == 1
    assert "401" in stderr

"""Duplicate scans through the HTTP API, against real PostgreSQL: contacts are written straight
into the service's database, a scan is started and followed, and its candidates paged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from crm_contacts.settings import Settings
from crmkit.ids import uuid7
from crmkit.testing import eventually

from .conftest import Contacts, unique_workspace

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(contacts: Contacts) -> AsyncIterator[asyncpg.Connection]:
    """The contacts service's own database (created and migrated by the running app)."""
    infra = contacts.infra
    conn = await asyncpg.connect(infra.postgres_dsn_for(Settings(infra=infra).database_name))
    yield conn
    await conn.close()


class People:
    """Writes contacts of one workspace the way the service stores them."""

    def __init__(self, conn: asyncpg.Connection, workspace: str) -> None:
        self.conn = conn
        self.workspace = workspace
        self.companies: dict[str, UUID] = {}

    async def add(self, first: str, last: str, *, emails: tuple[str, ...] = (),
                  phones: tuple[str, ...] = (), whatsapps: tuple[str, ...] = (),
                  company: str | None = None, merged_into: UUID | None = None,
                  erased: bool = False) -> UUID:
        contact_id = uuid7()
        async with self.conn.transaction():
            await self.conn.execute(
                "INSERT INTO contacts (id, workspace_id, display_name, first_name, last_name,"
                " merged_into, erased_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                contact_id, self.workspace, f"{first} {last}".strip(), first, last, merged_into,
                datetime.now(UTC) if erased else None)
            await self.conn.executemany(
                "INSERT INTO identities (workspace_id, kind, value, contact_id) VALUES ($1, $2, $3, $4)",
                [(self.workspace, kind, value, contact_id)
                 for kind, values in (("email", emails), ("phone", phones), ("whatsapp", whatsapps))
                 for value in values])
            if company is not None:
                if company not in self.companies:
                    self.companies[company] = uuid7()
                    await self.conn.execute(
                        "INSERT INTO companies (id, workspace_id, name) VALUES ($1, $2, $3)",
                        self.companies[company], self.workspace, company)
                await self.conn.execute(
                    "INSERT INTO contact_companies (workspace_id, contact_id, company_id)"
                    " VALUES ($1, $2, $3)", self.workspace, contact_id, self.companies[company])
        return contact_id


async def finished_scan(contacts: Contacts, workspace: str) -> dict[str, Any]:
    started = await contacts.http.post("/v1/duplicate-scans", headers=contacts.headers(workspace))
    assert started.status_code == 202, started.text
    scan_id = started.json()["id"]
    assert started.headers["location"] == f"/v1/duplicate-scans/{scan_id}"
    assert started.json()["status"] in ("queued", "running")
    body: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal body
        body = (await contacts.http.get(f"/v1/duplicate-scans/{scan_id}",
                                        headers=contacts.headers(workspace))).json()
        return body["status"] in ("done", "failed")

    await eventually(done, timeout=30, what="the scan to finish")
    assert body["status"] == "done", body
    return body


async def all_candidates(contacts: Contacts, workspace: str, scan_id: str) -> list[dict[str, Any]]:
    """Every candidate, two per page, following the cursors."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await contacts.http.get(f"/v1/duplicate-scans/{scan_id}/candidates", params=params,
                                       headers=contacts.headers(workspace))
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def pair(a: UUID, b: UUID) -> tuple[str, str]:
    first, second = sorted((a, b))
    return str(first), str(second)


async def test_a_scan_finds_phone_email_and_name_at_company_duplicates_with_their_reasons(
        contacts: Contacts, db: asyncpg.Connection) -> None:
    workspace = unique_workspace()
    people = People(db, workspace)
    ada = await people.add("Ada", "Lovelace", phones=("+442079460001",), emails=("ada@engines.org",))
    ada_whatsapp = await people.add("Ada", "", whatsapps=("+442079460001",))
    grace = await people.add("Grace", "Hopper", emails=("grace.hopper@gmail.com",))
    grace_again = await people.add("Grace", "Hopper", emails=("gracehopper+crm@gmail.com",))
    cath = await people.add("Catherine", "Jones", emails=("cjones@acme.example",), company="Acme Ltd")
    cath_again = await people.add("Catharine", "Jones", company="ACME")
    await people.add("Bob", "Jones", emails=("bob.jones@example.net",), phones=("+442079460002",),
                     company="Acme Ltd")  # at Acme too, but someone else
    await people.add("Alan", "Turing", whatsapps=("+442079460003",), emails=("alan@bletchley.example",))
    # Gone: a merged-away copy of Grace and an erased one; neither may be paired.
    await people.add("Grace", "Hopper", emails=("g.race.hopper@gmail.com",), merged_into=grace)
    await people.add("Grace", "Hopper", emails=("grace.hopper+old@gmail.com",), erased=True)

    scan = await finished_scan(contacts, workspace)
    assert scan["counts"]["contacts_scanned"] == 8
    assert scan["counts"]["candidates"] == 3
    assert scan["skipped_blocks"] == []
    assert scan["requested_by"] == "tester"

    found = await all_candidates(contacts, workspace, scan["id"])
    assert [(c["contact_a"], c["contact_b"], c["score"]) for c in found] == [
        (*pair(grace, grace_again), 95),
        (*pair(ada, ada_whatsapp), 90),
        (*pair(cath, cath_again), 70),
    ]
    grace_pair, ada_pair, cath_pair = found
    assert {"rule": "same_email", "score": 95} in [
        {"rule": r["rule"], "score": r["score"]} for r in grace_pair["reasons"]]
    assert ada_pair["reasons"] == [
        {"rule": "same_phone", "score": 90, "detail": "+442079460001 (phone / whatsapp)"}]
    assert [r["rule"] for r in cath_pair["reasons"]] == ["similar_name_same_company"]
    assert cath_pair["reasons"][0]["detail"] == "Catherine Jones / Catharine Jones (93% alike) at Acme Ltd"


async def test_another_workspace_cannot_see_a_scan_or_its_candidates(
        contacts: Contacts, db: asyncpg.Connection) -> None:
    workspace = unique_workspace()
    other = f"{workspace}-other"  # unique_workspace() twice in one millisecond gives one name
    people = People(db, workspace)
    await people.add("Ada", "Lovelace", phones=("+442079460001",))
    await people.add("Ada", "", whatsapps=("+442079460001",))
    scan = await finished_scan(contacts, workspace)

    for path in (f"/v1/duplicate-scans/{scan['id']}", f"/v1/duplicate-scans/{scan['id']}/candidates"):
        response = await contacts.http.get(path, headers=contacts.headers(other))
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    other_scan = await finished_scan(contacts, other)
    assert other_scan["counts"]["contacts_scanned"] == 0
    assert await all_candidates(contacts, other, other_scan["id"]) == []


async def test_a_cursor_not_given_out_is_a_422(contacts: Contacts, db: asyncpg.Connection) -> None:
    workspace = unique_workspace()
    scan = await finished_scan(contacts, workspace)
    for cursor in ("not-a-cursor", "WyJ4IiwxXQ"):
        response = await contacts.http.get(f"/v1/duplicate-scans/{scan['id']}/candidates",
                                           params={"cursor": cursor}, headers=contacts.headers(workspace))
        assert response.status_code == 422
        assert response.json()["type"].endswith("/invalid-cursor")


async def test_starting_a_scan_needs_the_write_scope(contacts: Contacts) -> None:
    workspace = unique_workspace()
    response = await contacts.http.post("/v1/duplicate-scans",
                                        headers=contacts.headers(workspace, roles=("support",)))
    assert response.status_code == 403
    unknown = await contacts.http.get(f"/v1/duplicate-scans/{uuid7()}",
                                      headers=contacts.headers(workspace, roles=("support",)))
    assert unknown.status_code == 404


async def test_a_scan_left_running_by_a_stopped_process_fails_and_a_new_one_can_start(
        contacts: Contacts, db: asyncpg.Connection) -> None:
    workspace = unique_workspace()
    orphan = uuid7()
    await db.execute(
        "INSERT INTO duplicate_scans (id, workspace_id, status, requested_by, started_at, heartbeat_at)"
        " VALUES ($1, $2, 'running', 'someone', now() - interval '10 minutes',"
        " now() - interval '5 minutes')", orphan, workspace)

    response = await contacts.http.get(f"/v1/duplicate-scans/{orphan}", headers=contacts.headers(workspace))
    assert response.json()["status"] == "failed"
    assert response.json()["error"] == "interrupted: the process running it stopped"
    scan = await finished_scan(contacts, workspace)
    assert scan["id"] != str(orphan)

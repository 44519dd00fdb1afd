"""A person's erasure reaches ticketing: their tickets are anonymised and contacts is told,
with contacts itself running (real PostgreSQL, broker and gRPC between the two)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest

from crm_contacts.main import create_app as create_contacts
from crm_contacts.settings import Settings as ContactsSettings
from crm_ticketing.main import create_app
from crm_ticketing.settings import Settings
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, eventually, free_port, interaction_event, publish, running_app, token_for

pytestmark = pytest.mark.integration


@dataclass
class Apps:
    contacts: httpx.AsyncClient
    tickets: httpx.AsyncClient
    dsn: str


@pytest.fixture(scope="module")
async def apps(infra: InfraSettings) -> AsyncIterator[Apps]:
    # Contacts with its own database and consumer group, so it neither takes nor writes what
    # other packages' contacts apps do; only ticketing erases here.
    contacts_infra = infra.model_copy(update={"database_prefix": f"{infra.database_prefix}te_",
                                              "consumer_group_prefix": f"{infra.consumer_group_prefix}te."})
    contacts_settings = ContactsSettings(http_port=free_port(), grpc_port=free_port(), infra=contacts_infra,
                                         erasure_services=["ticketing"])
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra,
                        contacts_grpc_target=f"127.0.0.1:{contacts_settings.grpc_port}")
    async with running_app(create_contacts(contacts_settings)) as contacts, \
            running_app(create_app(settings)) as tickets:
        yield Apps(contacts, tickets, infra.postgres_dsn_for(f"{infra.database_prefix}ticketing"))


async def test_an_erased_persons_tickets_keep_nothing_of_them_and_contacts_hears_so(
    apps: Apps, infra: InfraSettings
) -> None:
    ws = f"ws-er-{secrets.token_hex(4)}"
    headers = bearer(token_for(infra, ws, roles=("admin",)))
    name = f"Grace{secrets.token_hex(4)}"
    address = f"{name.lower()}@example.com"
    created = await apps.contacts.post("/v1/contacts", headers=headers,
                                       json={"first_name": name, "emails": [address]})
    assert created.status_code == 201, created.text
    contact = created.json()["id"]
    bystander = f"bystander-{secrets.token_hex(4)}@example.com"

    now = datetime.now(UTC)
    await publish(infra, [
        interaction_event(ws, contact, f"{contact}-1", now, subject=f"Invoice for {address}",
                          message_id=f"<1-{contact}@mail.example>", sender=("email", address),
                          text=f"I am {name}, write to {address}"),
        interaction_event(ws, contact, f"{contact}-2", now + timedelta(minutes=1), subject="Re: invoice",
                          message_id=f"<2-{contact}@mail.example>", in_reply_to=f"<1-{contact}@mail.example>",
                          sender=("email", address), text="Any news?"),
        interaction_event(ws, "0190aaaa-0000-7000-8000-000000000001", f"{bystander}-1", now,
                          subject="Someone else", message_id=f"<{bystander}>", sender=("email", bystander),
                          text="not erased"),
    ])
    tickets: list[dict[str, Any]] = []

    async def threaded() -> bool:
        page = await apps.tickets.get("/v1/tickets", params={"contact_id": contact}, headers=headers)
        tickets[:] = page.json()["items"]
        return len(tickets) == 1 and tickets[0]["message_count"] == 2

    await eventually(threaded, what="the person's ticket")

    # Solved: a survey goes out, and the person's answer names them.
    current = await apps.tickets.get(f"/v1/tickets/{tickets[0]['id']}", headers=headers)
    solved = await apps.tickets.patch(f"/v1/tickets/{tickets[0]['id']}", json={"status": "solved"},
                                      headers=headers | {"If-Match": current.headers["ETag"]})
    assert solved.status_code == 200, solved.text
    conn = await asyncpg.connect(apps.dsn)
    try:
        answered = await conn.execute(
            "UPDATE csat_surveys SET rating = 5, comment = $2, rated_at = now() WHERE ticket_id = $1",
            UUID(tickets[0]["id"]), f"{name} says thanks")
        assert answered == "UPDATE 1"
    finally:
        await conn.close()

    assert (await apps.contacts.post(f"/v1/contacts/{contact}/erasure", headers=headers)).status_code == 202

    async def confirmed() -> bool:
        status = (await apps.contacts.get(f"/v1/contacts/{contact}/erasure", headers=headers)).json()
        return bool(status["complete"] and "ticketing" in status["confirmed"])

    await eventually(confirmed, what="ticketing's erasure confirmation")

    ticket = (await apps.tickets.get(f"/v1/tickets/{tickets[0]['id']}", headers=headers)).json()
    assert (ticket["subject"], ticket["message_count"]) == ("", 2)  # still counted in reports
    conn = await asyncpg.connect(apps.dsn)
    try:
        leaks = []
        for table in [r["tablename"] for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]:
            for needle in (address, name, f"1-{contact}@mail.example"):
                rows = await conn.fetch(
                    f"SELECT t::text AS row FROM {table} t WHERE t::text ILIKE '%' || $1 || '%'",  # noqa: S608
                    needle)
                leaks.extend(f"{table}: {r['row'][:200]}" for r in rows if table != "outbox")
        assert leaks == []
        # Someone else's ticket is untouched.
        kept = await conn.fetchval("SELECT body FROM ticket_messages WHERE interaction_id = $1",
                                   f"{bystander}-1")
        assert kept == "not erased"
    finally:
        await conn.close()

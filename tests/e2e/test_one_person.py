"""One person across channels, through the running platform's public endpoints only: an email
and then a WhatsApp message land on one contact; a duplicate made by a second address is found
by the scan and merged, and its ticket follows; the person's data export gathers every service's
part; an erasure leaves nothing behind and stops a later import from bringing the person back."""

from __future__ import annotations

import io
import json
import secrets
import time
import zipfile
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import asyncpg
import httpx
import pytest

from crm_ingest.domain.whatsapp import sign
from crmkit.auth import issue_token
from crmkit.testing import eventually

from .conftest import WAIT, WHATSAPP_PHONE_NUMBER_ID, WHATSAPP_WORKSPACE, Platform

pytestmark = pytest.mark.e2e


def email(sender: str, name: str, subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"{name} <{sender}>"
    message["To"] = "support@acme.example"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.com")
    message.set_content("Hello from Ada.")
    return message.as_bytes()


def whatsapp(wa_id: str, text: str) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100000", "phone_number_id": WHATSAPP_PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Ada"}, "wa_id": wa_id}],
        "messages": [
            {
                "from": wa_id,
                "id": f"wamid.e2e-{secrets.token_hex(8)}",
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": text},
            }
        ],
    }
    delivery = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(delivery).encode()


async def test_one_person_across_channels_merged_and_erased(platform: Platform) -> None:
    ws = WHATSAPP_WORKSPACE
    tag = secrets.token_hex(3)
    first, second = f"ada.lovelace{tag}@gmail.com", f"adalovelace{tag}@gmail.com"  # one Gmail inbox
    wa_id = f"1555010{int(tag, 16) % 10_000:04d}"
    name = f"Ada Lovelace{tag}"
    token = issue_token(platform.secret, subject="e2e", workspace_id=ws, roles=["admin"])
    contacts, ticketing, ingest = (platform.url(s) for s in ("contacts", "ticketing", "ingest"))
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=15) as http:

        async def contact_with(identity: str) -> dict[str, Any] | None:
            page = (await http.get(f"{contacts}/v1/contacts", params={"q": identity})).json()
            return page["items"][0] if page["items"] else None

        async def tickets_of(contact_id: str) -> list[str]:
            page = (await http.get(f"{ticketing}/v1/tickets", params={"contact_id": contact_id})).json()
            return [t["id"] for t in page["items"]]

        # 1. An email makes the contact; an agent adds the phone; WhatsApp from that number joins it.
        sent = await http.post(
            f"{ingest}/v1/channels/email/inbound",
            content=email(first, name, "Order 1"),
            headers={"Content-Type": "message/rfc822"},
        )
        assert sent.status_code == 202
        found: dict[str, Any] = {}

        async def known(identity: str, key: str) -> bool:
            contact = await contact_with(identity)
            if contact:
                found[key] = contact
            return contact is not None

        await eventually(lambda: known(first, "ada"), timeout=WAIT, what="the contact from the email")
        ada = found["ada"]
        patched = await http.patch(
            f"{contacts}/v1/contacts/{ada['id']}",
            json={"phones": [f"+{wa_id}"]},
            headers={"If-Match": f'"{ada["version"]}"'},
        )
        assert patched.status_code == 200, patched.text
        body = whatsapp(wa_id, "Is my order on its way?")
        delivered = await http.post(
            f"{ingest}/v1/channels/whatsapp/webhook",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": sign(platform.whatsapp_secret.encode(), body),
            },
        )
        assert delivered.status_code == 200, delivered.text

        async def both_channels() -> bool:
            page = (await http.get(f"{contacts}/v1/contacts/{ada['id']}/timeline")).json()
            return {e["channel"] for e in page["items"] if e["kind"] == "interaction"} == {
                "email",
                "whatsapp",
            }

        await eventually(both_channels, timeout=WAIT, what="email and WhatsApp on one timeline")
        whole = (await http.get(f"{contacts}/v1/contacts/{ada['id']}")).json()
        assert {(i["kind"], i["value"]) for i in whole["identities"]} == {
            ("email", first),
            ("phone", f"+{wa_id}"),
            ("whatsapp", f"+{wa_id}"),
        }

        # 2. The same inbox without the dot makes a second contact with a ticket of its own.
        sent = await http.post(
            f"{ingest}/v1/channels/email/inbound",
            content=email(second, name, "Order 2"),
            headers={"Content-Type": "message/rfc822"},
        )
        assert sent.status_code == 202
        await eventually(lambda: known(second, "twin"), timeout=WAIT, what="the duplicate contact")
        twin = found["twin"]
        assert twin["id"] != ada["id"]
        twin_tickets: list[str] = []

        async def twin_ticket() -> bool:
            twin_tickets[:] = await tickets_of(twin["id"])
            return bool(twin_tickets)

        await eventually(twin_ticket, timeout=WAIT, what="the duplicate's ticket")

        # 3. The scan finds the pair; the merge moves the ticket to the survivor.
        scan = (await http.post(f"{contacts}/v1/duplicate-scans")).json()

        async def scanned() -> bool:
            status = (await http.get(f"{contacts}/v1/duplicate-scans/{scan['id']}")).json()["status"]
            assert status != "failed"
            return bool(status == "done")

        await eventually(scanned, timeout=60, what="the duplicate scan")
        candidates = (await http.get(f"{contacts}/v1/duplicate-scans/{scan['id']}/candidates")).json()[
            "items"
        ]
        pairs = {frozenset((c["contact_a"], c["contact_b"])): c for c in candidates}
        pair = pairs[frozenset((ada["id"], twin["id"]))]
        assert pair["score"] >= 90
        current = await http.get(f"{contacts}/v1/contacts/{ada['id']}")
        merged = await http.post(
            f"{contacts}/v1/contacts/{ada['id']}/merge",
            json={"loser_id": twin["id"]},
            headers={"If-Match": current.headers["etag"]},
        )
        assert merged.status_code == 200, merged.text

        async def ticket_moved() -> bool:
            return set(twin_tickets) <= set(await tickets_of(ada["id"]))

        await eventually(ticket_moved, timeout=WAIT, what="the duplicate's ticket on the survivor")
        assert (await http.get(f"{contacts}/v1/contacts/{twin['id']}")).json()["id"] == ada["id"]

        # 4. The data export: one archive with every service's part, for both ids of the person.
        parts: dict[str, Any] = {}

        async def exported() -> bool:
            response = await http.get(f"{contacts}/v1/contacts/{ada['id']}/personal-data")
            assert response.status_code == 200, response.text
            with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
                parts.clear()
                parts.update({name.removesuffix(".json"): json.loads(archive.read(name))
                              for name in archive.namelist()})
            tickets = {t["id"] for t in parts.get("ticketing", {}).get("tickets", [])}
            channels = {i["channel"] for i in parts.get("ingest", {}).get("interactions", [])}
            return set(twin_tickets) < tickets and channels == {"email", "whatsapp"}

        await eventually(exported, timeout=WAIT, what="the person's tickets and interactions in the export")
        assert {p["service"]: p["status"] for p in parts["manifest"]["parts"]} == dict.fromkeys(
            ("contacts", "ticketing", "pipeline", "campaigns", "ingest", "partners"), "ok")
        assert "Is my order on its way?" in {i["text"] for i in parts["ingest"]["interactions"]}

        # 5. Erasure: nothing personal is left in contacts, and an import cannot bring the person back.
        erased = await http.post(f"{contacts}/v1/contacts/{ada['id']}/erasure")
        assert erased.status_code == 202
        assert (await http.get(f"{contacts}/v1/contacts/{ada['id']}")).status_code == 404
        await assert_nothing_personal_in_contacts(platform, [first, second, wa_id, name])

        job = (
            await http.post(
                f"{contacts}/v1/imports",
                json={"mapping": {"Email": "emails", "Name": "first_name"}, "on_duplicate": "create"},
            )
        ).json()
        csv = f"Email,Name\n{first},Ada\n{second.upper()},Ada\nnew-{tag}@example.com,Newcomer\n"
        uploaded = await http.put(
            f"{contacts}{job['upload']['url']}", content=csv.encode(), headers={"Content-Type": "text/csv"}
        )
        assert uploaded.status_code == 202, uploaded.text
        result: dict[str, Any] = {}

        async def imported() -> bool:
            result.update((await http.get(f"{contacts}/v1/imports/{job['id']}")).json())
            return bool(result["status"] == "done")

        await eventually(imported, timeout=60, what="the import")
        assert (result["created"], result["skipped"]) == (1, 2)
        assert await contact_with(first) is None
        assert await contact_with(f"new-{tag}@example.com") is not None


async def assert_nothing_personal_in_contacts(platform: Platform, needles: list[str]) -> None:
    dsn = platform.postgres_dsn.rsplit("/", 1)[0] + f"/{platform.database_prefix}contacts"
    conn = await asyncpg.connect(dsn)
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        leaks: list[str] = []

        async def clean() -> bool:  # the outbox empties as its relay publishes
            leaks.clear()
            for table in tables:
                for needle in needles:
                    rows = await conn.fetch(
                        f"SELECT t::text AS row FROM {table} t WHERE t::text ILIKE '%' || $1 || '%'",  # noqa: S608
                        needle,
                    )
                    leaks.extend(f"{table}: {r['row'][:300]}" for r in rows)
            return not leaks

        try:
            await eventually(clean, timeout=WAIT, what="no personal data left in contacts' tables")
        except AssertionError:
            raise AssertionError("personal data left:\n" + "\n".join(leaks)) from None
    finally:
        await conn.close()

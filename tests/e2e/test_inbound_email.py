"""One inbound email through all five running services, as a user and a platform engineer see it."""

from __future__ import annotations

import secrets
from email.message import EmailMessage
from email.utils import make_msgid

import grpc
import httpx
import pytest

from crm.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from crmkit.auth import issue_token
from crmkit.testing import eventually

from .conftest import WAIT, Platform

pytestmark = pytest.mark.e2e
SERVICES = {"ingest", "contacts", "ticketing", "pipeline", "campaigns"}


def token(platform: Platform, workspace: str, role: str = "admin") -> str:
    return issue_token(platform.secret, subject="e2e", workspace_id=workspace, roles=[role])


def sample_email(sender: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"Grace Hopper <{sender}>"
    message["To"] = "support@acme.example"
    message["Subject"] = "The compiler ate my homework"
    message["Message-ID"] = make_msgid(domain="example.com")
    message.set_content("Please help.")
    return message.as_bytes()


async def test_an_inbound_email_reaches_every_service_in_one_trace(platform: Platform) -> None:
    workspace = f"e2e-{secrets.token_hex(3)}"
    sender = f"grace-{secrets.token_hex(3)}@example.com"
    headers = {"Authorization": f"Bearer {token(platform, workspace)}"}
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    async with httpx.AsyncClient(headers=headers, timeout=10) as http:
        accepted = await http.post(
            f"{platform.url('ingest')}/v1/channels/email/inbound", content=sample_email(sender),
            headers={"Content-Type": "message/rfc822", "traceparent": traceparent})
        assert accepted.status_code == 202

        tickets: list[dict[str, str]] = []

        async def ticket_opened() -> bool:
            tickets[:] = (await http.get(f"{platform.url('ticketing')}/v1/tickets")).json()["items"]
            return bool(tickets)

        await eventually(ticket_opened, timeout=WAIT, what="a ticket")
        [ticket] = tickets
        assert ticket["subject"] == "The compiler ate my homework"
        contact_id = ticket["contact_id"]

        contact = (await http.get(f"{platform.url('contacts')}/v1/contacts/{contact_id}")).json()
        assert contact["display_name"] == "Grace Hopper"
        assert contact["identities"] == [{"kind": "email", "value": sender}]

        async def on_timeline() -> bool:
            page = (await http.get(f"{platform.url('contacts')}/v1/contacts/{contact_id}/timeline")).json()
            # The email, and the ticket it opened (newest first).
            return sorted((e["kind"], e["summary"]) for e in page["items"]) == [
                ("interaction", "The compiler ate my homework"),
                ("ticket", "Ticket opened: The compiler ate my homework"),
            ]

        async def counted(service: str, path: str) -> bool:
            response = await http.get(f"{platform.url(service)}/v1/contacts/{contact_id}/{path}")
            return response.status_code == 200 and response.json()["interaction_count"] == 1

        await eventually(on_timeline, timeout=WAIT, what="the timeline entry")
        await eventually(lambda: counted("pipeline", "activity"), timeout=WAIT, what="pipeline's activity")
        await eventually(lambda: counted("campaigns", "engagement"), timeout=WAIT,
                         what="campaigns' engagement")

    async with grpc.aio.insecure_channel(platform.grpc("contacts")) as channel:
        reply = await contacts_pb2_grpc.ContactsServiceStub(channel).GetContact(
            contacts_pb2.GetContactRequest(contact_id=contact_id), timeout=5,
            metadata=(("authorization", f"Bearer {token(platform, workspace)}"),))
        assert reply.display_name == "Grace Hopper"

    async def traced_everywhere() -> bool:
        return platform.collector.services_in(trace_id) >= SERVICES

    await eventually(traced_everywhere, timeout=WAIT,
                     what=f"spans of trace {trace_id} from all five services")


async def test_another_workspace_sees_none_of_it(platform: Platform) -> None:
    workspace = f"e2e-{secrets.token_hex(3)}"
    async with httpx.AsyncClient(timeout=10) as http:
        mine = {"Authorization": f"Bearer {token(platform, workspace)}"}
        response = await http.post(
            f"{platform.url('ingest')}/v1/channels/email/inbound",
            content=sample_email(f"private-{secrets.token_hex(3)}@example.com"),
            headers={**mine, "Content-Type": "message/rfc822"})
        assert response.status_code == 202
        tickets: list[dict[str, str]] = []

        async def ticket_opened() -> bool:
            listed = await http.get(f"{platform.url('ticketing')}/v1/tickets", headers=mine)
            tickets[:] = listed.json()["items"]
            return bool(tickets)

        await eventually(ticket_opened, timeout=WAIT, what="a ticket")
        contact_id = tickets[0]["contact_id"]
        theirs = {"Authorization": f"Bearer {token(platform, 'someone-else')}"}
        for service, path in [("contacts", f"/v1/contacts/{contact_id}"),
                              ("contacts", f"/v1/contacts/{contact_id}/timeline"),
                              ("ticketing", f"/v1/tickets/{tickets[0]['id']}"),
                              ("pipeline", f"/v1/contacts/{contact_id}/activity"),
                              ("campaigns", f"/v1/contacts/{contact_id}/engagement")]:
            response = await http.get(platform.url(service) + path, headers=theirs)
            assert response.status_code == 404, (service, path, response.status_code)
        listed = (await http.get(f"{platform.url('ticketing')}/v1/tickets", headers=theirs)).json()
        assert all(t["contact_id"] != contact_id for t in listed["items"])
        for service in SERVICES:
            assert (await http.get(platform.url(service) + "/readyz")).status_code == 200


async def test_every_service_is_scrapeable_by_prometheus(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        for service in SERVICES:
            response = await http.get(platform.url(service) + "/metrics")
            assert response.status_code == 200
            assert "# TYPE" in response.text
        # Ticketing consumed the interactions of the tests above.
        scraped = (await http.get(platform.url("ticketing") + "/metrics")).text
        assert 'crm_consumer_records_total{' in scraped
        assert 'outcome="processed"' in scraped

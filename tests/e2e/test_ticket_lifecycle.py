"""A support ticket's life on the running platform, through its public doors only: a customer's
email opens a ticket, routed round-robin to an agent; the agent's reply reaches the customer's
mailbox threaded under their email; the customer's answer (In-Reply-To the agent's reply)
lands in the same ticket; the SLA first-response clock stopped at the agent's reply; the ticket
is solved and the customer's CSAT answer, given through the survey link they were mailed, is
recorded. And a WhatsApp ticket nobody answers breaches its first-response target on a
business-hours calendar: ``sla.breached`` arrives on crm.tickets.v1."""

from __future__ import annotations

import asyncio
import re
import secrets
import smtplib
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from crm.ticketing.v1 import events_pb2
from crm_ingest.domain.whatsapp import sign
from crmkit.auth import issue_token
from crmkit.kafka import Envelope
from crmkit.testing import eventually
from crmkit.topics import TICKETS

from .conftest import CHANNELS_ADDRESS, CHANNELS_WORKSPACE, WAIT, Platform
from .test_channels import whatsapp_delivery

pytestmark = pytest.mark.e2e
WS = CHANNELS_WORKSPACE


def bearer(platform: Platform, subject: str, role: str) -> dict[str, str]:
    token = issue_token(platform.secret, subject=subject, workspace_id=WS, roles=[role])
    return {"Authorization": f"Bearer {token}"}


def mail(sender: str, subject: str, text: str, message_id: str, in_reply_to: str = "",
         references: str = "") -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, CHANNELS_ADDRESS, subject
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"], message["References"] = in_reply_to, references
    message.set_content(text)
    return message


async def send(platform: Platform, message: EmailMessage) -> None:
    def over_smtp() -> None:
        with smtplib.SMTP("127.0.0.1", platform.smtp_port, timeout=30) as smtp:
            smtp.send_message(message)

    await asyncio.to_thread(over_smtp)


async def ticket_with(http: httpx.AsyncClient, headers: dict[str, str], words: str) -> dict[str, Any]:
    """The workspace's newest ticket whose subject has ``words``, once it exists."""
    found: list[dict[str, Any]] = []

    async def there() -> bool:
        page = (await http.get("/v1/tickets", params={"limit": 100}, headers=headers)).json()
        found[:] = [t for t in page["items"] if words in t["subject"]]
        return bool(found)

    await eventually(there, timeout=WAIT, what=f"the ticket about {words!r}")
    return found[0]


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    return "" if body is None else str(body.get_content())


async def mailed_to(platform: Platform, address: str, words: str) -> EmailMessage:
    """The last message the platform sent to ``address`` (at the SMTP relay) whose text has
    ``words`` (decoded: a long line may have been quoted-printable encoded)."""
    def match() -> list[EmailMessage]:
        parsed = [message_from_bytes(m, policy=policy.default) for m in list(platform.peers.mails)]
        return [m for m in parsed if isinstance(m, EmailMessage) and address in str(m["To"])
                and words in text_of(m)]

    async def arrived() -> bool:
        return bool(match())

    await eventually(arrived, timeout=WAIT, what=f"a mail to {address} with {words!r}")
    return match()[-1]


async def set_up_support(http: httpx.AsyncClient, admin: dict[str, str], tag: str) -> tuple[str, str]:
    """Two available agents in a team whose queue takes email round-robin, and an SLA policy for
    email on an always-open calendar. Returns the agents' ids."""
    agents = (f"agent-a-{tag}", f"agent-b-{tag}")
    for agent in agents:
        answer = await http.put(f"/v1/agents/{agent}", headers=admin, json={
            "display_name": agent, "capacity": 10, "availability": "available"})
        assert answer.status_code == 200, answer.text
    team = await http.post("/v1/teams", headers=admin,
                           json={"name": f"Support {tag}", "members": list(agents)})
    assert team.status_code == 201, team.text
    queue = await http.post("/v1/queues", headers=admin, json={
        "name": f"Email {tag}", "team_id": team.json()["id"], "strategy": "round_robin", "position": 0,
        "rules": {"channels": ["email"]}})
    assert queue.status_code == 201, queue.text
    day = [{"start": "00:00", "end": "24:00"}]
    calendar = await http.post("/v1/sla/calendars", headers=admin, json={
        "name": f"Always {tag}", "zone": "UTC", "week": dict.fromkeys(("mon", "tue", "wed", "thu", "fri",
                                                                      "sat", "sun"), day)})
    assert calendar.status_code == 201, calendar.text
    sla = await http.post("/v1/sla/policies", headers=admin, json={
        "name": f"Email {tag}", "position": 0, "calendar_id": calendar.json()["id"],
        "conditions": {"channels": ["email"]}, "targets": {"first_response": 3600, "resolution": 86400}})
    assert sla.status_code == 201, sla.text
    return agents


async def test_an_email_ticket_from_first_mail_to_csat(platform: Platform) -> None:
    tag = secrets.token_hex(4)
    admin = bearer(platform, "e2e-admin", "admin")
    customer, other = f"ada-{tag}@example.com", f"alan-{tag}@example.com"
    async with httpx.AsyncClient(base_url=platform.url("ticketing"), timeout=30) as http:
        agents = await set_up_support(http, admin, tag)

        # Two customers write; their tickets go to the two agents in turn.
        first_id = make_msgid(domain="example.com")
        await send(platform, mail(f"Ada <{customer}>", f"Order {tag} arrived broken", "The vase is broken.",
                                  first_id))
        ticket = await ticket_with(http, admin, f"Order {tag}")
        await send(platform, mail(f"Alan <{other}>", f"Invoice {tag} wrong", "Wrong VAT.",
                                  make_msgid(domain="example.com")))
        second = await ticket_with(http, admin, f"Invoice {tag}")

        async def both_assigned() -> bool:
            found = [(await http.get(f"/v1/tickets/{t['id']}", headers=admin)).json()
                     for t in (ticket, second)]
            return all(t["assignee"] for t in found)

        await eventually(both_assigned, timeout=WAIT, what="both tickets assigned")
        ticket = (await http.get(f"/v1/tickets/{ticket['id']}", headers=admin)).json()
        second = (await http.get(f"/v1/tickets/{second['id']}", headers=admin)).json()
        assert {ticket["assignee"], second["assignee"]} == set(agents)
        agent = bearer(platform, ticket["assignee"], "support")

        # The agent replies in the ticket; the reply reaches Ada threaded under her email.
        replied_at = datetime.now(UTC)
        reply = await http.post(f"/v1/tickets/{ticket['id']}/messages", headers=agent,
                                json={"body": f"Sorry about the vase ({tag}); a new one is on its way."})
        assert reply.status_code == 201, reply.text
        sent = await mailed_to(platform, customer, "a new one is on its way")
        assert sent["In-Reply-To"] == first_id
        assert f"Order {tag}" in str(sent["Subject"])
        assert "[#" in str(sent["Subject"])
        agent_message_id = str(sent["Message-ID"])

        # Ada answers the agent's mail: her answer lands in the same ticket.
        await send(platform, mail(f"Ada <{customer}>", f"Re: {sent['Subject']}", "Thank you!",
                                  make_msgid(domain="example.com"), in_reply_to=agent_message_id,
                                  references=f"{first_id} {agent_message_id}"))

        async def answered() -> bool:
            found = (await http.get(f"/v1/tickets/{ticket['id']}/messages", headers=agent)).json()["items"]
            return [m["direction"] for m in found] == ["inbound", "reply", "inbound"]

        await eventually(answered, timeout=WAIT, what="Ada's answer in the same ticket")
        page = (await http.get("/v1/tickets", params={"limit": 100}, headers=admin)).json()["items"]
        assert len([t for t in page if f"Order {tag}" in t["subject"]]) == 1

        # The first-response clock stopped at the agent's reply, within its target.
        clocks = (await http.get(f"/v1/tickets/{ticket['id']}/sla", headers=agent)).json()
        first_response = next(t for t in clocks["targets"] if t["target"] == "first_response")
        assert (first_response["state"], first_response["met"], first_response["breached"]) == (
            "stopped", True, False)
        stopped = datetime.fromisoformat(first_response["stopped_at"])
        assert abs(stopped - replied_at) < timedelta(seconds=30)

        # Solved: Ada is mailed a survey link, and her answer is recorded once.
        current = await http.get(f"/v1/tickets/{ticket['id']}", headers=agent)
        solved = await http.patch(f"/v1/tickets/{ticket['id']}", json={"status": "solved"},
                                  headers=agent | {"If-Match": current.headers["ETag"]})
        assert solved.status_code == 200, solved.text
        survey_mail = await mailed_to(platform, customer, "/v1/public/csat/")
        link = re.search(r"/v1/public/csat/([A-Za-z0-9_.\-]+)", text_of(survey_mail))
        assert link is not None
        token = link.group(1)
        survey = await http.get(f"/v1/public/csat/{token}")
        assert survey.status_code == 200, survey.text
        rated = await http.post(f"/v1/public/csat/{token}", json={"rating": 5, "comment": "Quick and kind"})
        assert rated.status_code == 200, rated.text
        assert (await http.post(f"/v1/public/csat/{token}", json={"rating": 1})).status_code in (409, 410)
        recorded = (await http.get(f"/v1/tickets/{ticket['id']}/csat", headers=agent)).json()
        assert [(s["rating"], s["comment"]) for s in recorded["items"]] == [(5, "Quick and kind")]


async def test_an_unanswered_whatsapp_ticket_breaches_on_business_hours(
    platform: Platform, infra_env: dict[str, str]
) -> None:
    tag = secrets.token_hex(4)
    admin = bearer(platform, "e2e-admin", "admin")
    now = datetime.now(UTC)
    # Business hours today and tomorrow, in UTC (the rest of the week closed): the clock runs now.
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    open_days = {days[now.weekday()], days[(now.weekday() + 1) % 7]}
    consumer = AIOKafkaConsumer(TICKETS, bootstrap_servers=infra_env["CRM_KAFKA_BOOTSTRAP_SERVERS"],
                                auto_offset_reset="latest")
    await consumer.start()
    try:
        await consumer.seek_to_end()
        async with httpx.AsyncClient(base_url=platform.url("ticketing"), timeout=30) as http, \
                httpx.AsyncClient(base_url=platform.url("ingest"), timeout=30) as ingest:
            calendar = await http.post("/v1/sla/calendars", headers=admin, json={
                "name": f"Open {tag}", "zone": "UTC",
                "week": {day: [{"start": "00:00", "end": "24:00"}] for day in open_days},
                "holidays": []})
            assert calendar.status_code == 201, calendar.text
            policy_ = await http.post("/v1/sla/policies", headers=admin, json={
                "name": f"WhatsApp {tag}", "position": -1, "calendar_id": calendar.json()["id"],
                "conditions": {"channels": ["whatsapp"]}, "targets": {"first_response": 5},
                "warning": {"before": 2}})
            assert policy_.status_code == 201, policy_.text

            wa_id = f"4477{secrets.randbelow(10**8):08d}"
            body = whatsapp_delivery(wa_id, f"wamid.sla-{tag}", f"Where is my parcel {tag}?")
            answer = await ingest.post("/v1/channels/whatsapp/webhook", content=body, headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": sign(platform.whatsapp_secret.encode(), body)})
            assert answer.status_code == 200, answer.text

            async def opened() -> dict[str, Any] | None:
                page = (await http.get("/v1/tickets", params={"limit": 100}, headers=admin)).json()
                return next((t for t in page["items"] if t["channel"] == "whatsapp"
                             and datetime.fromisoformat(t["created_at"]) >= now - timedelta(seconds=5)), None)

            found: list[dict[str, Any]] = []

            async def ticket_there() -> bool:
                ticket = await opened()
                found[:] = [ticket] if ticket else []
                return bool(found)

            await eventually(ticket_there, timeout=WAIT, what="the WhatsApp ticket")
            ticket = found[0]

            alerts: dict[str, Envelope] = {}

            async def breached() -> bool:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        envelope = Envelope.from_record(list(record.headers or ()), record.value)
                        if envelope.type in ("crm.tickets.sla.warning.v1", "crm.tickets.sla.breached.v1"):
                            event = envelope.parse(events_pb2.SlaBreached)
                            assert isinstance(event, events_pb2.SlaBreached)
                            if event.alert.ticket_id == ticket["id"]:
                                alerts[envelope.type] = envelope
                return "crm.tickets.sla.breached.v1" in alerts

            await eventually(breached, timeout=WAIT, what="sla.breached for the WhatsApp ticket")
            assert "crm.tickets.sla.warning.v1" in alerts
            event = alerts["crm.tickets.sla.breached.v1"].parse(events_pb2.SlaBreached)
            assert isinstance(event, events_pb2.SlaBreached)
            assert event.alert.target == "first_response"
            created = datetime.fromisoformat(ticket["created_at"])
            assert event.alert.due_at.ToDatetime(tzinfo=UTC) == created + timedelta(seconds=5)

            clocks = (await http.get(f"/v1/tickets/{ticket['id']}/sla", headers=admin)).json()
            first_response = next(t for t in clocks["targets"] if t["target"] == "first_response")
            assert (first_response["state"], first_response["breached"]) == ("running", True)
    finally:
        await consumer.stop()

"""Demo data for `make dev` in the "demo" workspace: a support team (an agent, a queue that
takes email round-robin, an SLA policy on office hours), a sales pipeline and the opt-in to
public events for partners; then a few inbound emails sent through ingest's public endpoint
exactly as a mail provider would, so every service has data; and a deal for one of the people
who wrote."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import httpx

from crmkit.auth import issue_token

WORKSPACE = "demo"
PEOPLE = [
    ("Ada Lovelace", "ada@example.com", "My order arrived damaged"),
    ("Grace Hopper", "grace@example.com", "Invoice question for November"),
    ("Alan Turing", "alan@example.com", "Can I upgrade my plan?"),
]


def demo_email(name: str, address: str, subject: str, sent: datetime) -> bytes:
    message = EmailMessage()
    message["From"] = f"{name} <{address}>"
    message["To"] = "support@acme.example"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="demo.example")
    message["Date"] = format_datetime(sent)
    message.set_content(f"Hello,\n\n{subject}. Thanks!\n\n{name.split()[0]}")
    return message.as_bytes()


def load_demo(secret: str, ports: dict[str, tuple[int, int]]) -> str:
    """Send the demo emails and wait until their tickets exist; return an admin token."""
    token = issue_token(secret, subject="demo-admin", workspace_id=WORKSPACE, roles=["admin"],
                        ttl_seconds=12 * 3600)
    headers = {"Authorization": f"Bearer {token}"}
    ingest = f"http://127.0.0.1:{ports['ingest'][0]}"
    tickets = f"http://127.0.0.1:{ports['ticketing'][0]}/v1/tickets"
    with httpx.Client(headers=headers, timeout=10) as client:
        existing = len(client.get(tickets).json()["items"])
        if existing >= len(PEOPLE):
            return token  # loaded on an earlier run: the data folder keeps it
        set_up_support(client, ports)
        pipeline = set_up_sales(client, ports)
        set_up_partners(client, ports)
        now = datetime.now(UTC)
        for i, (name, address, subject) in enumerate(PEOPLE):
            raw = demo_email(name, address, subject, now - timedelta(hours=i))
            response = client.post(f"{ingest}/v1/channels/email/inbound", content=raw,
                                   headers={"Content-Type": "message/rfc822"})
            response.raise_for_status()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(client.get(tickets).json()["items"]) >= len(PEOPLE):
                break
            time.sleep(0.3)
        open_deal(client, ports, pipeline, tickets)
    return token


def _check(response: httpx.Response) -> dict[str, Any]:
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def set_up_support(client: httpx.Client, ports: dict[str, tuple[int, int]]) -> None:
    """The admin is an available agent in a team whose queue takes email round-robin; email
    tickets get a first response within 4 business hours (Mon-Fri 09:00-17:00, Europe/Berlin)."""
    ticketing = f"http://127.0.0.1:{ports['ticketing'][0]}/v1"
    _check(client.put(f"{ticketing}/agents/demo-admin", json={
        "display_name": "Demo Admin", "capacity": 20, "availability": "available"}))
    team = _check(client.post(f"{ticketing}/teams", json={"name": "Support", "members": ["demo-admin"]}))
    _check(client.post(f"{ticketing}/queues", json={
        "name": "Email", "team_id": team["id"], "strategy": "round_robin", "rules": {"channels": ["email"]}}))
    office = [{"start": "09:00", "end": "17:00"}]
    calendar = _check(client.post(f"{ticketing}/sla/calendars", json={
        "name": "Berlin office", "zone": "Europe/Berlin",
        "week": dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), office)}))
    _check(client.post(f"{ticketing}/sla/policies", json={
        "name": "Email", "calendar_id": calendar["id"], "conditions": {"channels": ["email"]},
        "targets": {"first_response": 4 * 3600, "resolution": 3 * 8 * 3600}}))


def set_up_partners(client: httpx.Client, ports: dict[str, tuple[int, int]]) -> None:
    """The demo workspace publishes its events to partners (every public topic), so the feed
    (`GET /v1/events` on partners) shows what the demo does."""
    settings = f"http://127.0.0.1:{ports['partners'][0]}/v1/settings"
    _check(client.put(settings, json={"enabled": True, "domains": []}, headers={"If-Match": '"0"'}))


def set_up_sales(client: httpx.Client, ports: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """A "New business" pipeline in EUR with four open stages, won and lost; returns it."""
    pipeline = f"http://127.0.0.1:{ports['pipeline'][0]}/v1"
    _check(client.put(f"{pipeline}/settings/currency", json={"currency": "EUR"}))
    _check(client.post(f"{pipeline}/close-reasons", json={"kind": "won", "label": "Best value"}))
    _check(client.post(f"{pipeline}/close-reasons", json={"kind": "lost", "label": "Too expensive"}))
    return _check(client.post(f"{pipeline}/pipelines", json={"name": "New business", "stages": [
        {"name": "Lead", "probability": 10, "rotting_days": 14}, {"name": "Qualified", "probability": 30},
        {"name": "Proposal", "probability": 60}, {"name": "Negotiation", "probability": 80},
        {"name": "Won", "kind": "won"}, {"name": "Lost", "kind": "lost"}]}))


def open_deal(client: httpx.Client, ports: dict[str, tuple[int, int]], pipeline: dict[str, Any],
              tickets: str) -> None:
    """Alan, who asked about upgrading, gets a deal in Proposal."""
    asked = [t for t in client.get(tickets).json()["items"] if t["subject"] == PEOPLE[2][2]]
    if not asked:
        return
    stages = {stage["name"]: stage["id"] for stage in pipeline["stages"]}
    closing = (datetime.now(UTC) + timedelta(days=30)).date()
    _check(client.post(f"http://127.0.0.1:{ports['pipeline'][0]}/v1/deals", json={
        "pipeline_id": pipeline["id"], "stage_id": stages["Proposal"], "title": "Upgrade to Business",
        "currency": "EUR", "amount_minor": 480_000, "contact_id": asked[0]["contact_id"],
        "owner_id": "demo-admin", "expected_close_date": closing.isoformat()}))

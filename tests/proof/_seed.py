"""Workspace B's data: one resource of every kind the services' paths name, made through the
public APIs and channels, and a person with a known email address and phone number who writes
in by email, chat and WhatsApp (the personal data the log scan looks for).

``Seeds.ids[service][parameter]`` is B's value for a path parameter of that service; the
isolation matrix fills paths from it. A new service adds its resources here.

B is opted in to public events (partners) before anything else is made, so B's contacts,
tickets and deals are in B's feed, and B's partner has a delivery and a replay.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import smtplib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx

from crm_ingest.domain.whatsapp import sign
from crmkit.testing import eventually

from ..e2e.conftest import CHANNELS_ADDRESS, CHANNELS_WIDGET, WAIT
from ..e2e.test_channels import whatsapp_delivery
from ._platform import WORKSPACE_B, Proof

CONTACT_CREATED = "crm.contacts.contact.created.v1"
PARTNER_SCOPES = ["deliveries:replay", "events:read", "subscriptions:write"]


@dataclass
class Seeds:
    ids: dict[str, dict[str, str]] = field(default_factory=dict)
    # Bodies that B itself sent to make a resource: valid for the same resource's PUT/PATCH.
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The person's personal data as the channels carried it.
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201, 202), f"{response.request.url}: {response.text}"
    body: dict[str, Any] = response.json()
    return body


async def seed_workspace_b(proof: Proof, webhook_url: str) -> Seeds:
    """``webhook_url``: where B's partner's webhook goes (conftest's receiver)."""
    platform, tag = proof.platform, secrets.token_hex(4)
    admin = proof.headers(WORKSPACE_B)
    seeds = Seeds()
    email, phone = f"ada-{tag}@example.com", f"+4477008{secrets.randbelow(10**5):05d}"
    seeds.emails, seeds.phones = [email, f"ada-twin-{tag}@example.com"], [phone]
    clients = {name: httpx.AsyncClient(base_url=platform.url(name), timeout=30, headers=admin)
               for name in ("contacts", "pipeline", "ticketing", "campaigns", "ingest", "partners")}
    try:
        started = datetime.now(UTC)
        await _partners(clients["partners"], seeds, tag, webhook_url)
        contacts = await _contacts(clients["contacts"], seeds, tag, email, phone)
        await _channels(proof, seeds, tag, email, phone)
        await _ticketing(clients["ticketing"], seeds, tag)
        await _pipeline(clients["pipeline"], seeds, tag, contacts)
        await _campaigns(clients["campaigns"], seeds, tag, contacts)
        await _ingest(clients["ingest"], seeds, contacts["contact_id"])
        await _partner_deliveries(clients["partners"], seeds, started)
    finally:
        for client in clients.values():
            await client.aclose()
    return seeds


async def _contacts(http: httpx.AsyncClient, seeds: Seeds, tag: str, email: str,
                    phone: str) -> dict[str, str]:
    person = _created(await http.post("/v1/contacts", json={
        "first_name": "Ada", "last_name": "Lovelace", "emails": [email], "phones": [phone]}))
    twin = _created(await http.post("/v1/contacts", json={"first_name": "Ada", "emails": [seeds.emails[1]]}))
    company = _created(await http.post("/v1/companies", json={"name": f"Analytical {tag}"}))
    segment_body = {"name": f"Adas {tag}",
                    "rules": {"all": [{"field": "first_name", "op": "eq", "value": "Ada"}]}}
    segment = _created(await http.post("/v1/segments", json=segment_body))
    field_key = f"proof_{tag}"
    _created(await http.post("/v1/fields", json={"entity": "contact", "key": field_key, "label": "Proof",
                                                 "type": "text"}))
    job = _created(await http.post("/v1/imports", json={"mapping": {"E-mail": "emails"}}))
    scan = _created(await http.post("/v1/duplicate-scans"))
    # A third person, erased: the erasure's status is B's too.
    erased = _created(await http.post("/v1/contacts", json={"first_name": "Erased"}))
    _created(await http.post(f"/v1/contacts/{erased['id']}/erasure"))
    seeds.bodies["segment"] = segment_body
    seeds.ids["contacts"] = {
        "contact_id": person["id"], "survivor_id": person["id"], "company_id": company["id"],
        "segment_id": segment["id"], "entity": "contact", "key": field_key, "job_id": job["id"],
        "scan_id": scan["id"], "loser_id": twin["id"],
        "erased_id": erased["id"]}
    return {"contact_id": person["id"], "company_id": company["id"], "segment_id": segment["id"]}


async def _channels(proof: Proof, seeds: Seeds, tag: str, email: str, phone: str) -> None:
    """The person writes in on email (SMTP), chat (logged in on the website) and WhatsApp: the
    public doors, without a workspace token."""
    platform = proof.platform
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = f"Ada <{email}>", CHANNELS_ADDRESS, f"Proof {tag} invoice"
    mail["Message-ID"] = f"<proof-{tag}@example.com>"
    mail.set_content(f"My invoice is wrong; call me on {phone}.")
    mail.add_alternative(f"<p>My invoice is wrong; call me on {phone}.</p>", subtype="html")
    mail.add_attachment(b"invoice 42", maintype="text", subtype="plain", filename="invoice.txt")

    def over_smtp(message: EmailMessage) -> None:
        with smtplib.SMTP("127.0.0.1", platform.smtp_port, timeout=30) as smtp:
            smtp.send_message(message)

    await asyncio.to_thread(over_smtp, mail)
    second = EmailMessage()
    second["From"], second["To"] = f"Ada <{email}>", CHANNELS_ADDRESS
    second["Subject"] = f"Proof {tag} refund"
    second["Message-ID"] = f"<proof-{tag}.2@example.com>"
    second.set_content("And a refund, please.")
    await asyncio.to_thread(over_smtp, second)
    signature = hmac.new(platform.identity_secret.encode(), email.encode(), hashlib.sha256).hexdigest()
    async with httpx.AsyncClient(base_url=platform.url("ingest"), timeout=30) as ingest:
        session = _created(await ingest.post(
            f"/v1/chat/{CHANNELS_WIDGET}/sessions", headers={"Origin": "http://127.0.0.1"},
            json={"name": "Ada", "email": email, "email_signature": signature}))
        sent = await ingest.post(f"/v1/chat/{CHANNELS_WIDGET}/messages", headers={
            "Origin": "http://127.0.0.1", "Authorization": f"Bearer {session['token']}"},
            json={"client_id": f"c-{tag}", "text": f"Me again, {email}"})
        assert sent.status_code in (200, 202), sent.text
        body = whatsapp_delivery(phone.removeprefix("+"), f"wamid.proof-{tag}", "Any news?")
        answer = await ingest.post("/v1/channels/whatsapp/webhook", content=body, headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(platform.whatsapp_secret.encode(), body)})
        assert answer.status_code == 200, answer.text
    seeds.ids["ingest"] = {"session_id": session["session_id"], "index": "0"}
    seeds.bodies["tag"] = {"tag": tag}


async def _ticketing(http: httpx.AsyncClient, seeds: Seeds, tag: str) -> None:
    found: list[dict[str, Any]] = []

    async def ticket() -> bool:
        page = (await http.get("/v1/tickets", params={"limit": 100})).json()
        found[:] = [t for t in page["items"] if tag in t["subject"]]
        return len(found) == 2

    await eventually(ticket, timeout=WAIT, what="B's tickets from the two emails")
    ticket_id, other_id = found[0]["id"], found[1]["id"]
    day = [{"start": "00:00", "end": "24:00"}]
    calendar_body = {"name": f"Always {tag}", "zone": "UTC",
                     "week": dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), day)}
    calendar = _created(await http.post("/v1/sla/calendars", json=calendar_body))
    policy_body = {"name": f"Policy {tag}", "calendar_id": calendar["id"],
                   "targets": {"first_response": 3600}}
    policy = _created(await http.post("/v1/sla/policies", json=policy_body))
    team = _created(await http.post("/v1/teams", json={"name": f"Team {tag}", "members": []}))
    queue = _created(await http.post("/v1/queues", json={"name": f"Queue {tag}", "team_id": team["id"]}))
    macro = _created(await http.post("/v1/macros", json={"name": f"Macro {tag}", "body": "Thanks"}))
    view_body = {"name": f"View {tag}", "filters": {"status": ["open"]}}
    view = _created(await http.post("/v1/views", json=view_body))
    category = _created(await http.post("/v1/kb/categories", json={"name": f"Category {tag}"}))
    article = _created(await http.post("/v1/kb/articles", json={
        "title": f"Article {tag}", "locale": "en", "body": "Text"}))
    agent_id = f"agent-{tag}"
    agent = await http.put(f"/v1/agents/{agent_id}", json={"capacity": 5})
    assert agent.status_code in (200, 201), agent.text
    field_key = f"proof_{tag}"
    _created(await http.post("/v1/ticket-fields", json={"key": field_key, "label": "Proof", "type": "text"}))
    seeds.bodies.update(calendar=calendar_body, policy=policy_body, view=view_body)
    seeds.ids["ticketing"] = {
        "ticket_id": ticket_id, "other_id": other_id, "agent": agent_id, "agent_id": agent_id,
        "macro_id": macro["id"], "team_id": team["id"], "queue_id": queue["id"],
        "calendar_id": calendar["id"], "policy_id": policy["id"], "view_id": view["id"],
        "category_id": category["id"], "article_id": article["id"], "action": "publish", "key": field_key}


async def _pipeline(http: httpx.AsyncClient, seeds: Seeds, tag: str, contacts: dict[str, str]) -> None:
    pipeline = _created(await http.post("/v1/pipelines", json={"name": f"Pipeline {tag}", "stages": [
        {"name": "Open", "probability": 20}, {"name": "Won", "kind": "won"},
        {"name": "Lost", "kind": "lost"}]}))
    stage_id = pipeline["stages"][0]["id"]
    deal = _created(await http.post("/v1/deals", json={
        "pipeline_id": pipeline["id"], "title": f"Deal {tag}", "currency": "EUR", "amount_minor": 1000,
        "contact_id": contacts["contact_id"]}))
    reason = _created(await http.post("/v1/close-reasons", json={"kind": "won", "label": f"Reason {tag}"}))
    activity = _created(await http.post("/v1/activities", json={
        "kind": "call", "subject": f"Call {tag}", "deal_id": deal["id"]}))
    today = datetime.now(UTC).date()
    snapshot = _created(await http.post("/v1/forecast/snapshots", json={
        "from": f"{today.year}-01-01", "to": f"{today.year}-12-31"}))
    team_body = {"name": f"Sales {tag}", "members": [f"rep-{tag}"]}
    team = _created(await http.post("/v1/sales-teams", json=team_body))
    field_key = f"proof_{tag}"
    _created(await http.post("/v1/deal-fields", json={"key": field_key, "label": "Proof", "type": "text"}))
    seeds.bodies["sales_team"] = team_body
    seeds.ids["pipeline"] = {
        "pipeline_id": pipeline["id"], "stage_id": stage_id, "deal_id": deal["id"], "reason_id": reason["id"],
        "activity_id": activity["id"], "snapshot_id": snapshot["id"], "team_id": team["id"],
        "key": field_key, "contact_id": contacts["contact_id"]}


async def _campaigns(http: httpx.AsyncClient, seeds: Seeds, tag: str, contacts: dict[str, str]) -> None:
    template = _created(await http.post("/v1/templates", json={
        "name": f"Template {tag}", "subject": "Hello", "html": "<p>Hello</p>", "text": "Hello"}))
    campaign_body = {"name": f"Campaign {tag}", "template_id": template["id"],
                     "audience": {"segments": [contacts["segment_id"]]}}
    campaign = _created(await http.post("/v1/campaigns", json=campaign_body))
    variants = {"variants": [{"name": "A", "share_percent": 10, "subject": "Subject A"},
                             {"name": "B", "share_percent": 10, "subject": "Subject B"}],
                "metric": "open", "decide_after": 3}
    _created(await http.put(f"/v1/campaigns/{campaign['id']}/variants", json=variants))
    journey_body = {"name": f"Journey {tag}",
                    "trigger": {"kind": "segment_joined", "segment_id": contacts["segment_id"]},
                    "start": "welcome", "steps": {
                        "welcome": {"kind": "send_email", "template_id": template["id"], "next": "out"},
                        "out": {"kind": "exit"}}}
    journey = _created(await http.post("/v1/journeys", json=journey_body))
    seeds.bodies.update(campaign=campaign_body, journey=journey_body, variants=variants)
    seeds.ids["campaigns"] = {"template_id": template["id"], "campaign_id": campaign["id"],
                              "journey_id": journey["id"], "contact_id": contacts["contact_id"]}


async def _ingest(http: httpx.AsyncClient, seeds: Seeds, contact_id: str) -> None:
    found: list[str] = []

    async def interaction() -> bool:
        page = (await http.get("/v1/interactions", params={"contact_id": contact_id, "limit": 50})).json()
        found[:] = [i["id"] for i in page["items"] if "invoice" in i.get("subject", "")]
        return bool(found)

    await eventually(interaction, timeout=WAIT, what="B's first email (with HTML and an attachment)")
    seeds.ids["ingest"]["interaction_id"] = found[0]


async def opt_in(http: httpx.AsyncClient) -> None:
    """The workspace publishes public events (every domain); If-Match is its current version
    (an earlier test of the run may have set the shared workspace's settings)."""
    current = await http.get("/v1/settings")
    assert current.status_code == 200, current.text
    _created(await http.put("/v1/settings", json={"enabled": True, "domains": []},
                            headers={"If-Match": current.headers["etag"]}))


async def partner_with_webhook(http: httpx.AsyncClient, name: str, url: str) -> dict[str, str]:
    """A partner, an API key with every partner scope, and a webhook subscription to created
    contacts: their ids, and the key."""
    partner = _created(await http.post("/v1/partners", json={"name": name}))
    key = _created(await http.post(f"/v1/partners/{partner['id']}/keys", json={"scopes": PARTNER_SCOPES}))
    webhook = _created(await http.post(f"/v1/partners/{partner['id']}/subscriptions", json={
        "name": f"{name} webhook", "event_types": [CONTACT_CREATED], "delivery": "webhook", "url": url}))
    return {"partner_id": partner["id"], "key_id": key["id"], "key": key["key"],
            "subscription_id": webhook["id"]}


async def _partners(http: httpx.AsyncClient, seeds: Seeds, tag: str, url: str) -> None:
    """B opts in; its partner has a key, a webhook subscription and a Kafka one."""
    await opt_in(http)
    partner = await partner_with_webhook(http, f"Partner {tag}", url)
    kafka = _created(await http.post(f"/v1/partners/{partner['partner_id']}/subscriptions", json={
        "name": f"Kafka {tag}", "event_types": [CONTACT_CREATED], "delivery": "kafka"}))
    seeds.ids["partners"] = {"partner_id": partner["partner_id"], "key_id": partner["key_id"],
                             "subscription_id": partner["subscription_id"],
                             "kafka_subscription_id": kafka["id"]}


async def _partner_deliveries(http: httpx.AsyncClient, seeds: Seeds, started: datetime) -> None:
    """The webhook's first delivery (B's contacts were created after the opt-in), then a
    replay of the seeding's time, which makes deliveries of its own."""
    ids = seeds.ids["partners"]
    found: list[dict[str, Any]] = []

    async def delivered() -> bool:
        page = (await http.get(f"/v1/subscriptions/{ids['subscription_id']}/deliveries")).json()
        found[:] = [d for d in page["items"] if d["status"] == "delivered"]
        return bool(found)

    await eventually(delivered, timeout=WAIT, what="a webhook delivery of B's created contacts")
    replay = _created(await http.post(f"/v1/subscriptions/{ids['subscription_id']}/replay", json={
        "from_time": (started - timedelta(minutes=1)).isoformat(),
        "to_time": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}))
    assert replay["deliveries"] >= 1, replay
    ids.update(delivery_id=str(found[0]["id"]), replay_id=replay["id"])

"""Campaigns on the running platform, through its public doors only: a segment defined in
contacts gets an A/B campaign, sent through ingest to a local SMTP sink; a click on a tracked
link of variant B makes B the winner, which the rest of the segment then gets; a one-click
unsubscribe (RFC 8058) withdraws the person's consent in contacts and keeps them out of the next
campaign. And a journey mails a welcome when a contact joins a segment."""

from __future__ import annotations

import asyncio
import re
import secrets
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from crmkit.testing import eventually

from .conftest import WAIT, Platform
from .test_ticket_lifecycle import bearer, text_of

pytestmark = pytest.mark.e2e
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"}


def sent_mails(platform: Platform, subject: str) -> list[EmailMessage]:
    """What reached the SMTP sink with this subject, one per recipient."""
    parsed = [message_from_bytes(m, policy=policy.default) for m in list(platform.peers.mails)]
    found = {str(m["To"]): m for m in parsed if isinstance(m, EmailMessage) and str(m["Subject"]) == subject}
    return list(found.values())


async def mails_arrive(platform: Platform, subject: str, count: int) -> list[EmailMessage]:
    async def there() -> bool:
        return len(sent_mails(platform, subject)) >= count

    await eventually(there, timeout=WAIT, what=f"{count} mails {subject!r}")
    await asyncio.sleep(2)  # nothing more is coming
    return sent_mails(platform, subject)


async def consenting_people(contacts: httpx.AsyncClient, admin: dict[str, str], tag: str, count: int
                            ) -> dict[str, str]:
    """``count`` contacts tagged ``tag`` who agreed to email marketing: address -> contact id."""
    people: dict[str, str] = {}
    for i in range(count):
        address = f"p{i}-{tag}@example.com"
        made = await contacts.post("/v1/contacts", headers=admin,
                                   json={"first_name": f"P{i}", "emails": [address], "tags": [tag]})
        assert made.status_code == 201, made.text
        said = await contacts.put(f"/v1/contacts/{made.json()['id']}/consents", headers=admin, json={
            "channel": "email", "purpose": "marketing", "status": "granted", "source": "signup form"})
        assert said.status_code == 200, said.text
        people[address] = made.json()["id"]
    return people


async def template(campaigns: httpx.AsyncClient, admin: dict[str, str], subject: str) -> str:
    made = await campaigns.post("/v1/templates", headers=admin, json={
        "name": subject, "subject": subject, "text": "Hi {{ contact.first_name }}: https://shop.example/offer",
        "html": '<p>Hi {{ contact.first_name }}, <a href="https://shop.example/offer">see the offer</a></p>'})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def test_an_ab_campaign_a_winner_an_unsubscribe_and_a_journey(platform: Platform) -> None:
    tag = f"c{secrets.token_hex(4)}"
    admin = bearer(platform, "e2e-admin", "admin")
    async with httpx.AsyncClient(base_url=platform.url("contacts"), timeout=30) as contacts, \
            httpx.AsyncClient(base_url=platform.url("campaigns"), timeout=30) as campaigns:
        people = await consenting_people(contacts, admin, tag, 20)
        segment = await contacts.post("/v1/segments", headers=admin, json={
            "name": tag, "rules": {"field": "tags", "op": "has", "value": tag}})
        assert segment.status_code == 201, segment.text

        # A/B: 10 % of the segment gets each variant, the best click rate after 5 s wins.
        first, second = f"Offer A {tag}", f"Offer B {tag}"
        a, b = await template(campaigns, admin, first), await template(campaigns, admin, second)
        made = await campaigns.post("/v1/campaigns", headers=admin, json={
            "name": f"Spring {tag}", "template_id": a, "audience": {"segments": [segment.json()["id"]]}})
        assert made.status_code == 201, made.text
        campaign = made.json()["id"]
        variants = await campaigns.put(f"/v1/campaigns/{campaign}/variants", headers=admin, json={
            "variants": [{"name": "A", "share_percent": 10, "template_id": a},
                         {"name": "B", "share_percent": 10, "template_id": b}],
            "metric": "click", "decide_after": 5})
        assert variants.status_code == 200, variants.text
        assert (await campaigns.post(f"/v1/campaigns/{campaign}/send", headers=admin)).status_code == 200
        test_a, test_b = await mails_arrive(platform, first, 2), await mails_arrive(platform, second, 2)
        assert (len(test_a), len(test_b)) == (2, 2)

        # A reader of B clicks the tracked link: redirected to the shop, the click recorded.
        links = re.findall(r"https?://\S+/v1/t/c/[A-Za-z0-9_\-.]+", text_of(test_b[0]))
        assert links, text_of(test_b[0])
        clicked = await campaigns.get(links[0].replace(platform.url("campaigns"), ""), headers=BROWSER)
        assert (clicked.status_code, clicked.headers["location"]) == (302, "https://shop.example/offer")
        forged = await campaigns.get(links[0].replace(platform.url("campaigns"), "")[:-4] + "AAAA")
        assert (forged.status_code, forged.headers.get("location")) == (404, None)

        # B wins; the other 16 get B.
        everyone_b = await mails_arrive(platform, second, 18)
        assert (len(everyone_b), len(sent_mails(platform, first))) == (18, 2)
        results = (await campaigns.get(f"/v1/campaigns/{campaign}/ab", headers=admin)).json()
        assert results["winner"] == "B", results

        # One-click unsubscribe from B's message: consent withdrawn in contacts.
        leaving = everyone_b[0]
        address = leaving["To"].addresses[0].addr_spec
        header = str(leaving["List-Unsubscribe"])
        assert str(leaving["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
        url = re.search(r"<(https?://[^>]+)>", header)
        assert url is not None, header
        done = await campaigns.post(url.group(1).replace(platform.url("campaigns"), ""),
                                    content=b"List-Unsubscribe=One-Click",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert done.status_code == 200, done.text
        contact_id = people[address]

        async def withdrawn() -> bool:
            consents: dict[str, Any] = (await contacts.get(f"/v1/contacts/{contact_id}/consents",
                                                           headers=admin)).json()
            return any(c["channel"] == "email" and c["purpose"] == "marketing" and c["status"] == "withdrawn"
                       for c in consents["current"])

        await eventually(withdrawn, timeout=WAIT, what="the consent withdrawn in contacts")

        # The next campaign to the segment leaves them out.
        later = f"News {tag}"
        news = await campaigns.post("/v1/campaigns", headers=admin, json={
            "name": later, "template_id": await template(campaigns, admin, later),
            "audience": {"segments": [segment.json()["id"]]}})
        sent = await campaigns.post(f"/v1/campaigns/{news.json()['id']}/send", headers=admin)
        assert sent.status_code == 200, sent.text
        next_round = await mails_arrive(platform, later, 19)
        assert len(next_round) == 19
        assert address not in {str(m["To"]) for m in next_round}

        # A journey: whoever joins the VIP segment (tagged and consenting) gets a welcome.
        vip = f"vip{tag}"
        vips = await contacts.post("/v1/segments", headers=admin, json={"name": vip, "rules": {"all": [
            {"field": "tags", "op": "has", "value": vip},
            {"consent": {"channel": "email", "purpose": "marketing", "status": "granted"}}]}})
        assert vips.status_code == 201, vips.text
        welcome = f"Welcome VIP {tag}"
        greeting = await template(campaigns, admin, welcome)
        journey = await campaigns.post("/v1/journeys", headers=admin, json={
            "name": welcome, "trigger": {"kind": "segment_joined", "segment_id": vips.json()["id"]},
            "start": "welcome", "steps": {"welcome": {"kind": "send_email", "template_id": greeting}}})
        assert journey.status_code == 201, journey.text
        activated = await campaigns.post(f"/v1/journeys/{journey.json()['id']}/activate", headers=admin)
        assert activated.status_code == 200, activated.text
        await consenting_people(contacts, admin, vip, 1)
        [greeted] = await mails_arrive(platform, welcome, 1)
        assert f"p0-{vip}@example.com" in str(greeted["To"])

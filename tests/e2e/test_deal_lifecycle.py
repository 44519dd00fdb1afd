"""A deal's life on the running platform, through its public doors only: a person writes in by
email and becomes a contact; a sales rep opens a deal for them and moves it through the
pipeline's stages; the person's next email shows up as an activity on the deal; the deal is won
with a reason; the forecast and the funnel count it."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from email.utils import make_msgid
from typing import Any

import httpx
import pytest

from crmkit.testing import eventually

from .conftest import WAIT, Platform
from .test_ticket_lifecycle import bearer, mail, send, ticket_with

pytestmark = pytest.mark.e2e


async def test_a_deal_for_an_email_contact_goes_from_first_stage_to_won_and_the_forecast(
    platform: Platform,
) -> None:
    tag = secrets.token_hex(4)
    admin = bearer(platform, "e2e-admin", "admin")
    rep_id = f"rep-{tag}"
    rep = bearer(platform, rep_id, "sales")
    customer = f"grace-{tag}@example.com"
    async with httpx.AsyncClient(base_url=platform.url("ticketing"), timeout=30) as tickets, \
            httpx.AsyncClient(base_url=platform.url("pipeline"), timeout=30) as http:
        # The person writes in by email: contacts makes them a contact (their ticket names it).
        await send(platform, mail(f"Grace <{customer}>", f"Quote {tag} for 40 seats?", "Price for 40 seats?",
                                  make_msgid(domain="example.com")))
        contact_id = (await ticket_with(tickets, admin, f"Quote {tag}"))["contact_id"]

        # A pipeline with two open stages, a won and a lost one; a reason to win.
        base = await http.put("/v1/settings/currency", json={"currency": "EUR"}, headers=admin)
        assert base.status_code == 200, base.text
        created = await http.post("/v1/pipelines", headers=admin, json={
            "name": f"New business {tag}", "stages": [
                {"name": "Qualified", "probability": 20}, {"name": "Proposal", "probability": 60},
                {"name": "Won", "kind": "won"}, {"name": "Lost", "kind": "lost"}]})
        assert created.status_code == 201, created.text
        pipeline = created.json()
        stage = {s["name"]: s["id"] for s in pipeline["stages"]}
        reason = await http.post("/v1/close-reasons", headers=admin,
                                 json={"kind": "won", "label": f"Price {tag}"})
        assert reason.status_code == 201, reason.text

        # The rep opens a deal for the contact and moves it on.
        today = datetime.now(UTC).date()
        deal = await http.post("/v1/deals", headers=rep, json={
            "pipeline_id": pipeline["id"], "title": f"40 seats {tag}", "currency": "EUR",
            "amount_minor": 1_250_000, "contact_id": contact_id, "owner_id": rep_id,
            "expected_close_date": today.isoformat()})
        assert deal.status_code == 201, deal.text
        deal_id = deal.json()["id"]
        assert deal.json()["stage_id"] == stage["Qualified"]
        moved = await http.post(f"/v1/deals/{deal_id}/stage", headers=rep,
                                json={"stage_id": stage["Proposal"]})
        assert moved.status_code == 200, moved.text

        # Her next email lands on the deal as an activity.
        await send(platform, mail(f"Grace <{customer}>", f"Re: seats {tag}", "Can we start in January?",
                                  make_msgid(domain="example.com")))
        found: list[dict[str, Any]] = []

        async def on_the_deal() -> bool:
            page = (await http.get(f"/v1/deals/{deal_id}/activities", headers=rep)).json()
            found[:] = [a for a in page["items"] if a["kind"] == "email"]
            return bool(found)

        await eventually(on_the_deal, timeout=WAIT, what="the email as an activity on the deal")
        assert found[0]["contact_id"] == contact_id

        # Won, with the reason.
        won = await http.post(f"/v1/deals/{deal_id}/won", headers=rep,
                              json={"reason_id": reason.json()["id"], "note": "Signed for 40 seats"})
        assert won.status_code == 200, won.text
        assert (won.json()["status"], won.json()["stage_id"]) == ("won", stage["Won"])
        history = (await http.get(f"/v1/deals/{deal_id}/stage-history", headers=rep)).json()["items"]
        assert [h["to_stage_id"] for h in history][-2:] == [stage["Proposal"], stage["Won"]]

        # The forecast counts it as won for its owner this quarter; the funnel converts it.
        forecast = (await http.get("/v1/forecast", headers=rep, params={
            "pipeline_id": pipeline["id"], "period": "quarter", "group_by": "owner"})).json()
        mine = [line for line in forecast["lines"] if line["group"] == rep_id]
        assert [(line["won"], line["won_deals"], line["open_deals"]) for line in mine] == [(1_250_000, 1, 0)]
        funnel = (await http.get("/v1/analytics/funnel", headers=rep,
                                 params={"pipeline_id": pipeline["id"]})).json()
        by_name = {s["name"]: s for s in funnel["stages"]}
        assert (by_name["Qualified"]["entered"], by_name["Qualified"]["moved_on"]) == (1, 1)
        assert (by_name["Proposal"]["entered"], by_name["Proposal"]["won"]) == (1, 1)
        assert by_name["Qualified"]["conversion_to_won"] == 1.0

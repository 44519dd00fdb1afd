"""Pipelines, stages and deals over HTTP against real PostgreSQL and the broker, with contacts
running beside (its own database and consumer group) to check deals' contacts and companies."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from crm.pipeline.v1 import events_pb2
from crm_contacts.main import create_app as create_contacts
from crm_contacts.settings import Settings as ContactsSettings
from crm_pipeline.main import create_app
from crm_pipeline.settings import Settings
from crmkit.ids import uuid7
from crmkit.kafka import Envelope
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, free_port, running_app, token_for
from crmkit.topics import PIPELINE

pytestmark = pytest.mark.integration


@dataclass
class Apps:
    contacts: httpx.AsyncClient
    pipeline: httpx.AsyncClient
    infra: InfraSettings
    dsn: str


@pytest.fixture(scope="module")
async def apps(infra: InfraSettings) -> AsyncIterator[Apps]:
    # Contacts with its own database and consumer group, so it neither takes nor writes what
    # other packages' contacts apps do.
    contacts_infra = infra.model_copy(update={"database_prefix": f"{infra.database_prefix}pd_",
                                              "consumer_group_prefix": f"{infra.consumer_group_prefix}pd."})
    contacts_settings = ContactsSettings(http_port=free_port(), grpc_port=free_port(), infra=contacts_infra)
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra,
                        contacts_grpc_target=f"127.0.0.1:{contacts_settings.grpc_port}")
    async with running_app(create_contacts(contacts_settings)) as contacts, \
            running_app(create_app(settings)) as pipeline:
        yield Apps(contacts, pipeline, infra, infra.postgres_dsn_for(f"{infra.database_prefix}pipeline"))


def workspace() -> str:
    return f"ws-deals-{secrets.token_hex(4)}"


def admin(apps: Apps, ws: str) -> dict[str, str]:
    return bearer(token_for(apps.infra, ws, roles=("admin",), subject="boss"))


def sales(apps: Apps, ws: str, subject: str = "rep-1") -> dict[str, str]:
    return bearer(token_for(apps.infra, ws, roles=("sales",), subject=subject))


async def new_pipeline(apps: Apps, ws: str, *, won: bool = True,
                       name: str = "New business") -> dict[str, Any]:
    stages: list[dict[str, Any]] = [{"name": "Lead", "probability": 10},
                                    {"name": "Proposal", "probability": 50, "rotting_days": 14}]
    if won:
        stages.append({"name": "Won", "kind": "won"})
    stages.append({"name": "Lost", "kind": "lost"})
    response = await apps.pipeline.post("/v1/pipelines", json={"name": name, "stages": stages},
                                        headers=admin(apps, ws))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def new_contact(apps: Apps, ws: str) -> str:
    name = f"Ada{secrets.token_hex(3)}"
    response = await apps.contacts.post("/v1/contacts", headers=admin(apps, ws),
                                        json={"first_name": name, "emails": [f"{name.lower()}@example.com"]})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def new_company(apps: Apps, ws: str) -> str:
    response = await apps.contacts.post("/v1/companies", headers=admin(apps, ws),
                                        json={"name": f"Acme {secrets.token_hex(3)}"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def new_deal(apps: Apps, ws: str, pipeline: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"pipeline_id": pipeline["id"], "title": "Deal", "currency": "EUR", "amount_minor": 1000} | fields
    response = await apps.pipeline.post("/v1/deals", json=body, headers=sales(apps, ws))
    assert response.status_code == 201, response.text
    deal: dict[str, Any] = response.json()
    return deal


def stage(pipeline: dict[str, Any], name: str) -> str:
    return str(next(s["id"] for s in pipeline["stages"] if s["name"] == name))


async def events_of(apps: Apps, deal_ids: set[str], count: int) -> list[tuple[str, Any]]:
    """The first ``count`` events on crm.pipeline.v1 about these deals, as (type, message)."""
    types = {"crm.pipeline.deal.created.v1": events_pb2.DealCreated,
             "crm.pipeline.deal.updated.v1": events_pb2.DealUpdated,
             "crm.pipeline.deal.stage_changed.v1": events_pb2.DealStageChanged,
             "crm.pipeline.deal.won.v1": events_pb2.DealWon, "crm.pipeline.deal.lost.v1": events_pb2.DealLost}
    consumer = AIOKafkaConsumer(PIPELINE, bootstrap_servers=apps.infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    found: list[tuple[str, Any]] = []
    try:
        async with asyncio.timeout(45):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        envelope = Envelope.from_record(record.headers, record.value)
                        if envelope.type in types:
                            message: Any = envelope.parse(types[envelope.type])
                            if message.deal.id in deal_ids:
                                found.append((envelope.type, message))
    finally:
        await consumer.stop()
    return found


async def test_a_deal_with_contact_company_and_line_items_is_created_and_published(apps: Apps) -> None:
    ws = workspace()
    pipeline = await new_pipeline(apps, ws)
    assert [s["name"] for s in pipeline["stages"]] == ["Lead", "Proposal", "Won", "Lost"]
    assert [s["probability"] for s in pipeline["stages"]] == [10, 50, 100, 0]
    contact, other = await new_contact(apps, ws), await new_contact(apps, ws)
    company = await new_company(apps, ws)
    field = await apps.pipeline.post("/v1/deal-fields", headers=admin(apps, ws),
                                     json={"key": "plan", "label": "Plan", "type": "enum",
                                           "options": ["pro"]})
    assert field.status_code == 201, field.text

    deal = await new_deal(apps, ws, pipeline, title="Acme rollout", amount_minor=None, contact_id=contact,
                          company_id=company, participants=[{"contact_id": other, "role": "champion"}],
                          line_items=[{"product": "Seat", "quantity": 3, "unit_price_minor": 1999,
                                       "discount_minor": 500, "currency": "EUR"},
                                      {"product": "Setup", "quantity": 1, "unit_price_minor": 10000}],
                          custom_fields={"plan": "pro"}, tags=["hot", "hot", "q3"])
    assert deal["amount_minor"] == 3 * 1999 - 500 + 10000
    assert (deal["stage_id"], deal["status"], deal["owner_id"]) == (stage(pipeline, "Lead"), "open", "rep-1")
    assert (deal["contact_id"], deal["company_id"]) == (contact, company)
    assert deal["participants"] == [{"contact_id": other, "role": "champion"}]
    assert [i["total_minor"] for i in deal["line_items"]] == [5497, 10000]
    assert (deal["custom_fields"], deal["tags"]) == ({"plan": "pro"}, ["hot", "q3"])

    shown = await apps.pipeline.get(f"/v1/deals/{deal['id']}", headers=sales(apps, ws))
    assert shown.status_code == 200
    assert shown.headers["ETag"] == '"1"'
    assert shown.json() == deal
    history = (await apps.pipeline.get(f"/v1/deals/{deal['id']}/stage-history",
                                       headers=sales(apps, ws))).json()
    assert [(h["from_stage_id"], h["to_stage_id"], h["actor"]) for h in history["items"]] == [
        (None, stage(pipeline, "Lead"), "rep-1")]

    [(kind, created)] = await events_of(apps, {deal["id"]}, 1)
    assert kind == "crm.pipeline.deal.created.v1"
    assert (created.deal.amount_minor, created.deal.currency, created.deal.probability) == (15497, "EUR", 10)
    assert created.deal.status == events_pb2.DEAL_STATUS_OPEN
    assert created.actor == "rep-1"


async def test_bad_deals_are_422_naming_the_field_and_nothing_is_written(apps: Apps) -> None:
    ws = workspace()
    pipeline, other_pipeline = await new_pipeline(apps, ws), await new_pipeline(apps, ws, name="Renewals")
    base = {"pipeline_id": pipeline["id"], "title": "Bad", "currency": "EUR", "amount_minor": 100}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"contact_id": str(uuid7())}, "contact_id"),
        ({"company_id": str(uuid7())}, "company_id"),
        ({"participants": [{"contact_id": str(uuid7())}]}, "participants[0].contact_id"),
        ({"stage_id": stage(other_pipeline, "Lead")}, "stage_id"),
        ({"stage_id": stage(pipeline, "Won")}, "stage_id"),
        ({"pipeline_id": str(uuid7())}, "pipeline_id"),
        ({"amount_minor": -1}, "amount_minor"),
        ({"currency": "EURO"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"line_items": [{"product": "Seat", "quantity": 1, "unit_price_minor": 100, "currency": "USD"}]},
         "line_items[0].currency"),
        ({"line_items": [{"product": "Seat", "quantity": 1, "unit_price_minor": 100}], "amount_minor": 99},
         "amount_minor"),
        ({"custom_fields": {"undefined": 1}}, "custom_fields.undefined"),
    ]
    for change, field in cases:
        response = await apps.pipeline.post("/v1/deals", json=base | change, headers=sales(apps, ws))
        assert response.status_code == 422, (change, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in response.json()["errors"]], (change, response.json())
    listed = await apps.pipeline.get("/v1/deals", headers=sales(apps, ws))
    assert listed.json()["items"] == []
    conn = await asyncpg.connect(apps.dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM deals WHERE workspace_id = $1", ws) == 0
        assert await conn.fetchval("SELECT count(*) FROM deal_stage_changes WHERE workspace_id = $1", ws) == 0
    finally:
        await conn.close()


async def test_updates_need_the_current_etag_and_are_published(apps: Apps) -> None:
    ws = workspace()
    pipeline = await new_pipeline(apps, ws)
    deal = await new_deal(apps, ws, pipeline)
    path = f"/v1/deals/{deal['id']}"
    missing = await apps.pipeline.patch(path, json={"title": "New"}, headers=sales(apps, ws))
    assert missing.status_code == 428
    stale = await apps.pipeline.patch(path, json={"title": "New"},
                                      headers=sales(apps, ws) | {"If-Match": '"7"'})
    assert stale.status_code == 412
    assert stale.headers["ETag"] == '"1"'
    updated = await apps.pipeline.patch(path, json={"title": "New", "amount_minor": 2500},
                                        headers=sales(apps, ws) | {"If-Match": '"1"'})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["title"], updated.json()["amount_minor"], updated.headers["ETag"]) == (
        "New", 2500, '"2"')
    again = await apps.pipeline.patch(path, json={"title": "Newer"},
                                      headers=sales(apps, ws) | {"If-Match": '"1"'})
    assert again.status_code == 412
    bad = await apps.pipeline.patch(path, json={"amount_minor": -3, "title": None},
                                    headers=sales(apps, ws) | {"If-Match": '"2"'})
    assert bad.status_code == 422
    assert (await apps.pipeline.get(path, headers=sales(apps, ws))).json()["version"] == 2
    _, (kind, event) = await events_of(apps, {deal["id"]}, 2)
    assert kind == "crm.pipeline.deal.updated.v1"
    assert sorted(event.changed) == ["amount_minor", "title"]
    assert event.deal.version == 2

    deleted = await apps.pipeline.delete(path, headers=sales(apps, ws) | {"If-Match": '"2"'})
    assert deleted.status_code == 204
    assert (await apps.pipeline.get(path, headers=sales(apps, ws))).status_code == 404


async def test_stage_moves_record_who_when_and_time_in_stage(apps: Apps) -> None:
    ws = workspace()
    pipeline = await new_pipeline(apps, ws)
    deal = await new_deal(apps, ws, pipeline)
    conn = await asyncpg.connect(apps.dsn)
    try:  # the deal entered its stage two hours ago
        await conn.execute("UPDATE deals SET stage_entered_at = now() - interval '2 hours' WHERE id = $1",
                           UUID(deal["id"]))
    finally:
        await conn.close()
    moved = await apps.pipeline.post(f"/v1/deals/{deal['id']}/stage",
                                     json={"stage_id": stage(pipeline, "Proposal")},
                                     headers=sales(apps, ws, "rep-2"))
    assert moved.status_code == 200, moved.text
    assert (moved.json()["stage_id"], moved.json()["version"]) == (stage(pipeline, "Proposal"), 2)
    history = (await apps.pipeline.get(f"/v1/deals/{deal['id']}/stage-history",
                                       headers=sales(apps, ws))).json()["items"]
    assert [(h["from_stage_id"], h["to_stage_id"], h["actor"]) for h in history] == [
        (None, stage(pipeline, "Lead"), "rep-1"),
        (stage(pipeline, "Lead"), stage(pipeline, "Proposal"), "rep-2")]
    assert 7200 <= history[1]["seconds_in_from"] < 7300

    to_won = await apps.pipeline.post(f"/v1/deals/{deal['id']}/stage",
                                      json={"stage_id": stage(pipeline, "Won")},
                                      headers=sales(apps, ws))
    assert to_won.status_code == 422
    stale = await apps.pipeline.post(f"/v1/deals/{deal['id']}/stage",
                                     json={"stage_id": stage(pipeline, "Lead")},
                                     headers=sales(apps, ws) | {"If-Match": '"1"'})
    assert stale.status_code == 412
    _, (kind, changed) = await events_of(apps, {deal["id"]}, 2)
    assert kind == "crm.pipeline.deal.stage_changed.v1"
    assert changed.from_stage_id == stage(pipeline, "Lead")
    assert changed.to_stage_id == stage(pipeline, "Proposal")
    assert changed.seconds_in_from >= 7200
    assert changed.deal.probability == 50


async def test_won_and_lost_take_a_reason_from_the_list_and_the_pipelines_terminal_stage(apps: Apps) -> None:
    ws = workspace()
    pipeline, no_won = await new_pipeline(apps, ws), await new_pipeline(apps, ws, won=False, name="No win")
    reasons = {}
    for kind, label in (("won", "Best price"), ("lost", "Too expensive")):
        response = await apps.pipeline.post("/v1/close-reasons", json={"kind": kind, "label": label},
                                            headers=admin(apps, ws))
        assert response.status_code == 201, response.text
        reasons[kind] = response.json()["id"]
    winner, loser, stuck = (await new_deal(apps, ws, pipeline), await new_deal(apps, ws, pipeline),
                            await new_deal(apps, ws, no_won))

    unexplained = await apps.pipeline.post(f"/v1/deals/{winner['id']}/won", json={}, headers=sales(apps, ws))
    assert unexplained.status_code == 422
    assert [e["field"] for e in unexplained.json()["errors"]] == ["reason_id"]
    wrong = await apps.pipeline.post(f"/v1/deals/{winner['id']}/won", json={"reason_id": reasons["lost"]},
                                     headers=sales(apps, ws))
    assert wrong.status_code == 422
    won = await apps.pipeline.post(f"/v1/deals/{winner['id']}/won",
                                   json={"reason_id": reasons["won"], "note": "signed today"},
                                   headers=sales(apps, ws))
    assert won.status_code == 200, won.text
    assert (won.json()["status"], won.json()["stage_id"], won.json()["close_reason_id"],
            won.json()["close_note"]) == ("won", stage(pipeline, "Won"), reasons["won"], "signed today")
    assert won.json()["closed_at"] is not None
    twice = await apps.pipeline.post(f"/v1/deals/{winner['id']}/won", json={"reason_id": reasons["won"]},
                                     headers=sales(apps, ws))
    assert twice.status_code == 409

    lost = await apps.pipeline.post(f"/v1/deals/{loser['id']}/lost", json={"reason_id": reasons["lost"]},
                                    headers=sales(apps, ws))
    assert (lost.json()["status"], lost.json()["stage_id"]) == ("lost", stage(pipeline, "Lost"))
    nowhere = await apps.pipeline.post(f"/v1/deals/{stuck['id']}/won", json={"reason_id": reasons["won"]},
                                       headers=sales(apps, ws))
    assert nowhere.status_code == 422
    assert [e["field"] for e in nowhere.json()["errors"]] == ["stage"]
    still = await apps.pipeline.get(f"/v1/deals/{stuck['id']}", headers=sales(apps, ws))
    assert still.json()["status"] == "open"

    published = await events_of(apps, {winner["id"], loser["id"]}, 6)
    kinds = [(message.deal.id, kind) for kind, message in published]
    assert (winner["id"], "crm.pipeline.deal.won.v1") in kinds
    assert (loser["id"], "crm.pipeline.deal.lost.v1") in kinds
    won_event = next(m for k, m in published if k == "crm.pipeline.deal.won.v1")
    assert (won_event.reason, won_event.note, won_event.deal.status) == (
        "Best price", "signed today", events_pb2.DEAL_STATUS_WON)


async def test_the_board_pages_each_stage_and_totals_in_the_base_currency(apps: Apps) -> None:
    ws = workspace()
    pipeline = await new_pipeline(apps, ws)
    assert (await apps.pipeline.put("/v1/settings/currency", json={"currency": "EUR"},
                                    headers=admin(apps, ws))).status_code == 200
    assert (await apps.pipeline.put("/v1/settings/currency", json={"currency": "EUR"},
                                    headers=sales(apps, ws))).status_code == 403
    rate = await apps.pipeline.put("/v1/exchange-rates/USD/2020-01-01", json={"rate": "0.5"},
                                   headers=admin(apps, ws))
    assert rate.status_code == 200, rate.text
    bad_rate = await apps.pipeline.put("/v1/exchange-rates/USD/2020-01-01", json={"rate": "-1"},
                                       headers=admin(apps, ws))
    assert bad_rate.status_code == 422
    lead, proposal = stage(pipeline, "Lead"), stage(pipeline, "Proposal")
    ids = [(await new_deal(apps, ws, pipeline, amount_minor=amount, currency=currency))["id"]
           for amount, currency in ((1000, "EUR"), (2000, "EUR"), (3000, "EUR"), (1001, "USD"), (500, "GBP"))]
    await new_deal(apps, ws, pipeline, stage_id=proposal, amount_minor=4000)

    board = await apps.pipeline.get(f"/v1/pipelines/{pipeline['id']}/board", params={"per_stage": 2},
                                    headers=sales(apps, ws))
    assert board.status_code == 200, board.text
    body = board.json()
    assert body["base_currency"] == "EUR"
    assert [c["stage"]["name"] for c in body["stages"]] == ["Lead", "Proposal", "Won", "Lost"]
    first = body["stages"][0]
    assert [d["id"] for d in first["deals"]] == ids[:2]
    # 1001 US cents at 0.5 is 500.5 euro cents: half to even, 500. GBP has no rate: counted only.
    assert first["totals"] == {"count": 5, "amount_base_minor": 1000 + 2000 + 3000 + 500,
                               "weighted_base_minor": 650, "unconverted_currencies": ["GBP"]}
    assert body["stages"][1]["totals"] == {"count": 1, "amount_base_minor": 4000, "weighted_base_minor": 2000,
                                           "unconverted_currencies": []}
    seen = [d["id"] for d in first["deals"]]
    cursor = first["next_cursor"]
    while cursor:
        page = await apps.pipeline.get(f"/v1/pipelines/{pipeline['id']}/board/stages/{lead}",
                                       params={"cursor": cursor, "per_stage": 2}, headers=sales(apps, ws))
        assert page.status_code == 200, page.text
        seen += [d["id"] for d in page.json()["items"]]
        cursor = page.json()["next_cursor"]
    assert seen == ids
    forged = await apps.pipeline.get(f"/v1/pipelines/{pipeline['id']}/board/stages/{proposal}",
                                     params={"cursor": first["next_cursor"]}, headers=sales(apps, ws))
    assert forged.status_code == 422


async def test_archiving_a_stage_with_open_deals_moves_them_in_one_go(apps: Apps) -> None:
    ws = workspace()
    pipeline = await new_pipeline(apps, ws)
    lead, proposal = stage(pipeline, "Lead"), stage(pipeline, "Proposal")
    deals = [await new_deal(apps, ws, pipeline) for _ in range(2)]
    path = f"/v1/pipelines/{pipeline['id']}/stages/{lead}"
    refused = await apps.pipeline.delete(path, headers=admin(apps, ws))
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["move_deals_to"]
    to_won = await apps.pipeline.delete(path, params={"move_deals_to": stage(pipeline, "Won")},
                                        headers=admin(apps, ws))
    assert to_won.status_code == 422
    assert (await apps.pipeline.delete(path, params={"move_deals_to": proposal},
                                       headers=sales(apps, ws))).status_code == 403
    archived = await apps.pipeline.delete(path, params={"move_deals_to": proposal}, headers=admin(apps, ws))
    assert archived.status_code == 200, archived.text
    assert [(s["name"], s["position"], s["archived"]) for s in archived.json()["stages"]] == [
        ("Proposal", 0, False), ("Won", 1, False), ("Lost", 2, False), ("Lead", 0, True)]
    for deal in deals:
        shown = (await apps.pipeline.get(f"/v1/deals/{deal['id']}", headers=sales(apps, ws))).json()
        assert shown["stage_id"] == proposal
        history = (await apps.pipeline.get(f"/v1/deals/{deal['id']}/stage-history",
                                           headers=sales(apps, ws))).json()["items"]
        last = history[-1]
        assert (last["from_stage_id"], last["to_stage_id"], last["actor"]) == (lead, proposal, "boss")

    renamed = await apps.pipeline.patch(f"/v1/pipelines/{pipeline['id']}/stages/{proposal}",
                                        json={"name": "Offer", "probability": 60}, headers=admin(apps, ws))
    assert renamed.status_code == 200, renamed.text
    order = [s["id"] for s in renamed.json()["stages"] if not s["archived"]]
    reordered = await apps.pipeline.put(f"/v1/pipelines/{pipeline['id']}/stage-order",
                                        json={"stage_ids": [order[0], order[2], order[1]]},
                                        headers=admin(apps, ws))
    assert [s["name"] for s in reordered.json()["stages"]][:3] == ["Offer", "Lost", "Won"]
    added = await apps.pipeline.post(f"/v1/pipelines/{pipeline['id']}/stages",
                                     json={"name": "Qualified", "probability": 20, "position": 0},
                                     headers=admin(apps, ws))
    assert [s["name"] for s in added.json()["stages"]][:4] == ["Qualified", "Offer", "Lost", "Won"]
    second_won = await apps.pipeline.post(f"/v1/pipelines/{pipeline['id']}/stages",
                                          json={"name": "Won again", "kind": "won"}, headers=admin(apps, ws))
    assert second_won.status_code == 422


async def test_another_workspace_sees_and_changes_nothing(apps: Apps) -> None:
    ws, other = workspace(), workspace()
    pipeline = await new_pipeline(apps, ws)
    deal = await new_deal(apps, ws, pipeline)
    theirs = sales(apps, other)
    for path in (f"/v1/deals/{deal['id']}", f"/v1/deals/{deal['id']}/stage-history",
                 f"/v1/pipelines/{pipeline['id']}", f"/v1/pipelines/{pipeline['id']}/board"):
        assert (await apps.pipeline.get(path, headers=theirs)).status_code == 404, path
    assert (await apps.pipeline.get("/v1/deals", headers=theirs)).json()["items"] == []
    patched = await apps.pipeline.patch(f"/v1/deals/{deal['id']}", json={"title": "Mine"},
                                        headers=theirs | {"If-Match": '"1"'})
    assert patched.status_code == 404
    moved = await apps.pipeline.post(f"/v1/deals/{deal['id']}/stage",
                                     json={"stage_id": stage(pipeline, "Proposal")}, headers=theirs)
    assert moved.status_code == 404
    planted = await apps.pipeline.post("/v1/deals", json={"pipeline_id": pipeline["id"], "title": "x",
                                                          "currency": "EUR"}, headers=theirs)
    assert planted.status_code == 422
    contact = await new_contact(apps, ws)
    borrowed = await apps.pipeline.post("/v1/deals", headers=admin(apps, other), json={
        "pipeline_id": (await new_pipeline(apps, other))["id"], "title": "x", "currency": "EUR",
        "contact_id": contact})
    assert borrowed.status_code == 422
    unchanged = await apps.pipeline.get(f"/v1/deals/{deal['id']}", headers=sales(apps, ws))
    assert unchanged.json()["title"] == "Deal"
    support = bearer(token_for(apps.infra, ws, roles=("support",)))
    assert (await apps.pipeline.get(f"/v1/deals/{deal['id']}", headers=support)).status_code == 200
    assert (await apps.pipeline.post(f"/v1/deals/{deal['id']}/lost", json={},
                                     headers=support)).status_code == 403

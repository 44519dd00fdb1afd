"""Forecast, funnel, win rate, sales teams and snapshots on a small known set of deals, with
exact figures: real PostgreSQL and broker. The workspace's days are Europe/Berlin's.

The deals are written with SQL (the rows the deals API writes), so that their dates, close
times and stage history are known to the second."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from crm_pipeline.main import create_app
from crm_pipeline.settings import Settings
from crmkit.ids import uuid7
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, free_port, running_app, token_for

pytestmark = pytest.mark.integration
WS, OTHER = "ws-forecast", "ws-forecast-other"
RANGE = {"from": "2027-01-01", "to": "2027-06-30"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def settings(infra: InfraSettings) -> Settings:
    return Settings(http_port=free_port(), grpc_port=free_port(), infra=infra,
                    forecast_time_zone="Europe/Berlin", forecast_snapshot_check_seconds=3600)


@pytest.fixture(scope="module")
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(app) as client:
        yield client


@pytest.fixture(scope="module")
async def db(settings: Settings, client: httpx.AsyncClient) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(settings.infra.postgres_dsn_for(settings.database_name))
    yield conn
    await conn.close()


def headers(infra: InfraSettings, workspace: str = WS, role: str = "sales") -> dict[str, str]:
    return bearer(token_for(infra, workspace, roles=(role,), subject=f"{role}-1"))


class Seeded:
    def __init__(self) -> None:
        self.pipeline = uuid7()
        self.stages: dict[str, UUID] = {}
        self.deals: dict[str, UUID] = {}


@pytest.fixture(scope="module")
async def seeded(db: asyncpg.Connection) -> Seeded:
    """One pipeline (Lead 10 %, Proposal 50 %, Negotiation 80 %, Won, Lost); EUR base; USD at
    0.5 (a later rate, dated after today, must not apply); no JPY rate."""
    s = Seeded()
    await db.execute("INSERT INTO pipelines (id, workspace_id, name) VALUES ($1, $2, 'Sales')",
                     s.pipeline, WS)
    for position, (name, probability, kind) in enumerate((
            ("Lead", 10, "open"), ("Proposal", 50, "open"), ("Negotiation", 80, "open"),
            ("Won", 100, "won"), ("Lost", 0, "lost"))):
        s.stages[name] = uuid7()
        await db.execute("INSERT INTO stages (id, workspace_id, pipeline_id, name, position, probability,"
                         " kind) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                         s.stages[name], WS, s.pipeline, name, position, probability, kind)
    await db.execute("INSERT INTO workspace_currency (workspace_id, base_currency) VALUES ($1, 'EUR')", WS)
    await db.executemany("INSERT INTO exchange_rates (workspace_id, currency, valid_on, rate)"
                         " VALUES ($1, $2, $3, $4)",
                         [(WS, "USD", date(2020, 1, 1), 0.5), (WS, "USD", date(2099, 1, 1), 7)])

    async def deal(key: str, owner: str, stage: str, amount: int, currency: str = "EUR", *,
                   close: date | None = None, category: str = "pipeline", closed_at: datetime | None = None,
                   created_at: datetime | None = None, deleted: bool = False) -> None:
        s.deals[key] = uuid7()
        status = {"Won": "won", "Lost": "lost"}.get(stage, "open")
        await db.execute(
            "INSERT INTO deals (id, workspace_id, pipeline_id, stage_id, title, amount_minor, currency,"
            " expected_close_date, owner_id, status, closed_at, forecast_category, created_at, deleted_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, coalesce($13, now()), $14)",
            s.deals[key], WS, s.pipeline, s.stages[stage], key, amount, currency, close, owner, status,
            closed_at, category, created_at, datetime.now(UTC) if deleted else None)

    await deal("d1", "ann", "Proposal", 10_000, close=date(2027, 2, 1), category="commit")
    await deal("d2", "ann", "Negotiation", 3_333, "USD", close=date(2027, 3, 31), category="best_case")
    await deal("d3", "ann", "Won", 2_000, closed_at=at("2027-02-15T10:00:00"),
               created_at=at("2027-01-16T10:00:00"))
    await deal("d4", "bob", "Lead", 5_000, close=date(2027, 1, 10))
    await deal("d5", "bob", "Lead", 7_000, close=date(2027, 1, 10), category="omitted")
    await deal("d6", "bob", "Lost", 9_000, closed_at=at("2027-02-01T10:00:00"))
    await deal("d7", "bob", "Proposal", 100, "JPY", close=date(2027, 2, 1))
    await deal("d8", "cy", "Proposal", 4_000, close=date(2027, 4, 2), category="commit")
    await deal("d9", "ann", "Proposal", 1_000_000, close=date(2028, 1, 1))  # after the range
    await deal("d10", "ann", "Proposal", 5_000, close=date(2027, 2, 1), deleted=True)
    # won at 23:30 on 31 March in UTC: 1 April in Berlin, so the second quarter
    await deal("d11", "ann", "Won", 1_000, closed_at=at("2027-03-31T22:30:00"),
               created_at=at("2027-03-22T22:30:00"))

    def change(key: str, before: str | None, after: str, when: str, seconds: int | None) -> tuple[Any, ...]:
        return (WS, s.deals[key], before and s.stages[before], s.stages[after], at(when), "tester", seconds)

    await db.executemany(
        "INSERT INTO deal_stage_changes (workspace_id, deal_id, from_stage_id, to_stage_id, at, actor,"
        " seconds_in_from) VALUES ($1, $2, $3, $4, $5, $6, $7)", [
            change("d4", None, "Lead", "2025-12-20T09:00:00", None),  # entered before the range
            change("d3", None, "Lead", "2026-01-02T09:00:00", None),
            change("d6", None, "Lead", "2026-01-02T09:00:00", None),
            change("d4", "Lead", "Proposal", "2026-01-02T09:00:00", 13 * 86_400),
            change("d3", "Lead", "Proposal", "2026-01-03T09:00:00", 86_400),
            change("d3", "Proposal", "Won", "2026-01-04T09:00:00", 86_400),
            change("d1", None, "Lead", "2026-01-05T10:00:00", None),
            change("d6", "Lead", "Lost", "2026-01-05T09:00:00", 3 * 86_400),
            change("d2", None, "Lead", "2026-01-06T10:00:00", None),
            change("d2", "Lead", "Proposal", "2026-01-06T11:00:00", 3_600),
            change("d1", "Lead", "Proposal", "2026-01-07T10:00:00", 2 * 86_400),
            change("d2", "Proposal", "Negotiation", "2026-01-10T11:00:00", 4 * 86_400),
            change("d1", "Proposal", "Lead", "2026-02-03T10:00:00", 27 * 86_400),  # after the range
        ])
    return s


def line(period: str, group: str | None, weighted: int, commit: int, best_case: int, pipeline: int,
         won: int, open_deals: int, won_deals: int) -> dict[str, Any]:
    return {"period": period, "group": group, "weighted": weighted, "commit": commit, "best_case": best_case,
            "pipeline": pipeline, "won": won, "open_deals": open_deals, "won_deals": won_deals}


def figures(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in x.items() if k != "period_start"} for x in body["lines"]]


# ann Q1: d1 10,000 EUR at 50 % (commit) + d2 3,333 USD = 1,666.5 -> 1,666 EUR (half to even) at 80 %
# (best case; weighted 3,333 x 80 % x 0.5 = 1,333.2 -> 1,333) + d3 won 2,000.
ANN_Q1 = line("2027-Q1", "ann", 6_333, 12_000, 13_666, 11_666, 2_000, 2, 1)
BOB_Q1 = line("2027-Q1", "bob", 500, 0, 0, 5_000, 0, 1, 0)  # d5 omitted, d6 lost, d7 JPY (no rate)
ANN_Q2 = line("2027-Q2", "ann", 0, 1_000, 1_000, 0, 1_000, 0, 1)  # d11 won on 1 April in Berlin
CY_Q2 = line("2027-Q2", "cy", 2_000, 4_000, 4_000, 4_000, 0, 1, 0)


async def test_forecast_by_owner_and_quarter(client: httpx.AsyncClient, infra: InfraSettings,
                                             seeded: Seeded) -> None:
    response = await client.get("/v1/forecast", headers=headers(infra),
                                params={**RANGE, "period": "quarter", "group_by": "owner"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["currency"] == "EUR"
    assert body["missing_rates"] == ["JPY"]
    assert (body["start"], body["end"]) == ("2027-01-01", "2027-07-01")
    assert figures(body) == [ANN_Q1, BOB_Q1, ANN_Q2, CY_Q2]

    one_pipeline = await client.get("/v1/forecast", headers=headers(infra),
                                    params={**RANGE, "pipeline_id": str(seeded.pipeline)})
    total_q1 = line("2027-Q1", None, 6_833, 12_000, 13_666, 16_666, 2_000, 3, 1)
    assert figures(one_pipeline.json())[0] == total_q1


async def test_forecast_by_month_and_by_team(client: httpx.AsyncClient, infra: InfraSettings,
                                             seeded: Seeded) -> None:
    months = (await client.get("/v1/forecast", headers=headers(infra),
                               params={**RANGE, "period": "month"})).json()
    assert [(x["period"], x["pipeline"], x["won"]) for x in months["lines"]] == [
        ("2027-01", 5_000, 0), ("2027-02", 10_000, 2_000), ("2027-03", 1_666, 0), ("2027-04", 4_000, 1_000)]

    admin = headers(infra, role="admin")
    created = await client.post("/v1/sales-teams", headers=admin,
                                json={"name": "East", "members": ["ann", "bob"]})
    assert created.status_code == 201, created.text
    team = created.json()["id"]
    clash = await client.post("/v1/sales-teams", headers=admin, json={"name": "West", "members": ["bob"]})
    assert clash.status_code == 422
    assert clash.json()["errors"][0]["field"] == "members"
    sales = await client.post("/v1/sales-teams", headers=headers(infra), json={"name": "X", "members": []})
    assert sales.status_code == 403

    body = (await client.get("/v1/forecast", headers=headers(infra),
                             params={**RANGE, "group_by": "team"})).json()
    assert figures(body) == [
        line("2027-Q1", team, 6_833, 12_000, 13_666, 16_666, 2_000, 3, 1),
        {**CY_Q2, "group": None},  # cy is in no team
        {**ANN_Q2, "group": team},
    ]


async def test_bad_periods_ranges_and_groupings_are_422(client: httpx.AsyncClient,
                                                        infra: InfraSettings) -> None:
    for params, field in (({"period": "week"}, "period"), ({"group_by": "stage"}, "group_by"),
                          ({"from": "2027-06-01", "to": "2027-01-01"}, "to"),
                          ({"from": "2020-01-01", "to": "2027-01-01", "period": "month"}, "to")):
        response = await client.get("/v1/forecast", headers=headers(infra), params=params)
        assert response.status_code == 422, params
        assert [e["field"] for e in response.json()["errors"]] == [field]
    response = await client.get("/v1/analytics/win-rate", headers=headers(infra), params={"group_by": "team"})
    assert response.status_code == 422


async def test_funnel_counts_conversions_and_times(client: httpx.AsyncClient, infra: InfraSettings,
                                                   seeded: Seeded) -> None:
    response = await client.get("/v1/analytics/funnel", headers=headers(infra), params={
        "pipeline_id": str(seeded.pipeline), "from": "2026-01-01", "to": "2026-01-31"})
    assert response.status_code == 200, response.text
    stages = {s["name"]: s for s in response.json()["stages"]}
    assert list(stages) == ["Lead", "Proposal", "Negotiation", "Won", "Lost"]
    lead, proposal = stages["Lead"], stages["Proposal"]
    # Lead: d3, d6, d1, d2 entered; d3, d1, d2 moved on (d6 was lost); d3 is won
    assert (lead["entered"], lead["moved_on"], lead["won"]) == (4, 3, 1)
    assert (lead["conversion_to_next"], lead["conversion_to_won"]) == (0.75, 0.25)
    # exits in the range: d4 13 days (it entered before), d3 1 day, d6 3 days, d2 1 hour, d1 2 days
    assert lead["exits"] == 5
    assert lead["average_seconds_in_stage"] == (13 + 1 + 3 + 2) * 86_400 / 5 + 3_600 / 5
    assert lead["median_seconds_in_stage"] == 2 * 86_400
    # Proposal: d4, d3, d2, d1 entered; d3 won, d2 on to Negotiation; d1 went back (after the range)
    assert (proposal["entered"], proposal["moved_on"], proposal["won"]) == (4, 2, 1)
    assert proposal["conversion_to_next"] == 0.5
    assert proposal["average_seconds_in_stage"] == (86_400 + 4 * 86_400) / 2
    assert (stages["Negotiation"]["entered"], stages["Negotiation"]["moved_on"]) == (1, 0)
    assert stages["Negotiation"]["average_seconds_in_stage"] is None
    assert (stages["Won"]["entered"], stages["Won"]["won"], stages["Lost"]["entered"]) == (1, 1, 1)


async def test_win_rate_and_cycle_length(client: httpx.AsyncClient, infra: InfraSettings,
                                         seeded: Seeded) -> None:
    response = await client.get("/v1/analytics/win-rate", headers=headers(infra), params={
        "from": "2027-01-01", "to": "2027-12-31", "group_by": "owner", "pipeline_id": str(seeded.pipeline)})
    assert response.status_code == 200, response.text
    body = response.json()
    # d3 won after 30 days, d11 after 9; d6 lost
    assert body["overall"] == {"owner_id": None, "won": 2, "lost": 1, "win_rate": 0.6667,
                               "average_cycle_days": 19.5}
    assert body["by_owner"] == [
        {"owner_id": "ann", "won": 2, "lost": 0, "win_rate": 1.0, "average_cycle_days": 19.5},
        {"owner_id": "bob", "won": 0, "lost": 1, "win_rate": 0.0, "average_cycle_days": None}]


async def test_snapshots_compare_week_to_week(client: httpx.AsyncClient, infra: InfraSettings, seeded: Seeded,
                                              app: FastAPI, db: asyncpg.Connection) -> None:
    first = await client.post("/v1/forecast/snapshots", headers=headers(infra), json=RANGE)
    assert first.status_code == 201, first.text
    assert [x["group"] for x in first.json()["lines"]] == ["ann", "bob", "ann", "cy"]
    marked = await client.put(f"/v1/deals/{seeded.deals['d4']}/forecast-category", headers=headers(infra),
                              json={"forecast_category": "commit"})
    assert marked.status_code == 200, marked.text
    bad = await client.put(f"/v1/deals/{seeded.deals['d4']}/forecast-category", headers=headers(infra),
                           json={"forecast_category": "maybe"})
    assert bad.status_code == 422
    second = await client.post("/v1/forecast/snapshots", headers=headers(infra), json=RANGE)
    a, b = first.json()["id"], second.json()["id"]

    listed = await client.get("/v1/forecast/snapshots", headers=headers(infra))
    assert [s["id"] for s in listed.json()][:2] == [b, a]
    compared = await client.get("/v1/forecast/compare", headers=headers(infra), params={"a": a, "b": b})
    assert compared.status_code == 200, compared.text
    changes = {(c["period"], c["group"]): c for c in compared.json()["changes"]}
    bob = changes["2027-Q1", "bob"]
    assert (bob["commit"], bob["best_case"], bob["weighted"], bob["pipeline"]) == (5_000, 5_000, 0, 0)
    assert bob["a"]["commit"] == 0
    assert bob["b"]["commit"] == 5_000
    assert changes["2027-Q1", "ann"]["commit"] == 0

    # The scheduled snapshot: once per week and workspace, however often it is asked for.
    await app.state.snapshots.take_due()
    await app.state.snapshots.take_due()
    scheduled = await db.fetch(
        "SELECT slot FROM forecast_snapshots WHERE workspace_id = $1 AND slot IS NOT NULL", WS)
    today = datetime.now(UTC).date()
    assert len(scheduled) == 1
    assert today - timedelta(days=7) < scheduled[0]["slot"] <= today


async def test_another_workspace_sees_and_changes_nothing(client: httpx.AsyncClient, infra: InfraSettings,
                                                          seeded: Seeded) -> None:
    other = headers(infra, OTHER)
    forecast = await client.get("/v1/forecast", headers=other, params=RANGE)
    assert forecast.status_code == 200
    assert forecast.json()["lines"] == []
    funnel = await client.get("/v1/analytics/funnel", headers=other,
                              params={"pipeline_id": str(seeded.pipeline)})
    assert funnel.status_code == 404
    marked = await client.put(f"/v1/deals/{seeded.deals['d1']}/forecast-category", headers=other,
                              json={"forecast_category": "omitted"})
    assert marked.status_code == 404
    snapshot = (await client.post("/v1/forecast/snapshots", headers=headers(infra), json=RANGE)).json()["id"]
    assert (await client.get(f"/v1/forecast/snapshots/{snapshot}", headers=other)).status_code == 404
    compared = await client.get("/v1/forecast/compare", headers=other, params={"a": snapshot, "b": snapshot})
    assert compared.status_code == 404
    teams = await client.get("/v1/sales-teams", headers=other)
    assert teams.json() == []
    unauthenticated = await client.get("/v1/forecast")
    assert unauthenticated.status_code == 401

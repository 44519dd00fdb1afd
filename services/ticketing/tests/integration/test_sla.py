"""SLA end to end against real PostgreSQL and the broker: calendars and policies over HTTP,
clocks kept on every ticket change, and the scheduler emitting sla.warning / sla.breached on
time, once, across a restart and next to competing schedulers."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from crm.ticketing.v1 import events_pb2
from crm_ticketing.domain.business_hours import WEEKDAYS
from crm_ticketing.domain.events import SLA_BREACHED, SLA_WARNING
from crm_ticketing.main import create_app
from crm_ticketing.service.sla import SlaScheduler
from crm_ticketing.settings import Settings
from crmkit.ids import uuid7
from crmkit.kafka import Envelope
from crmkit.postgres import PgDatabase, create_pool
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, eventually, free_port, interaction_event, publish, running_app, token_for
from crmkit.topics import TICKETS

pytestmark = pytest.mark.integration
ALWAYS_OPEN = {"name": "24/7", "zone": "UTC",
               "week": {day: [{"start": "00:00", "end": "24:00"}] for day in WEEKDAYS}}


@dataclass
class Alert:
    type: str
    alert: events_pb2.SlaAlert
    received_at: datetime


@dataclass
class App:
    """The ticketing app, which a test can stop and start again on the same database."""

    settings: Settings
    client: httpx.AsyncClient | None = None
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    @property
    def http(self) -> httpx.AsyncClient:
        assert self.client is not None
        return self.client

    async def start(self) -> None:
        self._stack = AsyncExitStack()
        self.client = await self._stack.enter_async_context(running_app(create_app(self.settings)))

    async def stop(self) -> None:
        await self._stack.aclose()
        self.client = None


class Alerts:
    """Every sla.* event on crm.tickets.v1 since the module started, by ticket."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.seen: list[Alert] = []

    async def poll(self, seconds: float = 0.5) -> None:
        batches = await self.consumer.getmany(timeout_ms=int(seconds * 1000))
        now = datetime.now(UTC)
        for records in batches.values():
            for record in records:
                envelope = Envelope.from_record(record.headers, record.value)
                if envelope.type == SLA_WARNING:
                    alert = events_pb2.SlaWarning.FromString(envelope.data).alert
                elif envelope.type == SLA_BREACHED:
                    alert = events_pb2.SlaBreached.FromString(envelope.data).alert
                else:
                    continue
                self.seen.append(Alert(envelope.type, alert, now))

    def of(self, ticket_id: str) -> list[Alert]:
        return [a for a in self.seen if a.alert.ticket_id == ticket_id]

    async def wait_for(self, ticket_id: str, count: int, timeout: float = 40) -> list[Alert]:
        deadline = time.monotonic() + timeout
        while len(self.of(ticket_id)) < count:
            assert time.monotonic() < deadline, f"{len(self.of(ticket_id))} of {count} alerts for {ticket_id}"
            await self.poll()
        return self.of(ticket_id)

    async def settle(self, seconds: float) -> None:
        """Read on for ``seconds``: whatever else was coming has come."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await self.poll(0.3)


@pytest.fixture(scope="module")
async def app(infra: InfraSettings) -> AsyncIterator[App]:
    app = App(Settings(http_port=free_port(), grpc_port=free_port(), infra=infra))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture(scope="module")
async def alerts(infra: InfraSettings, app: App) -> AsyncIterator[Alerts]:
    consumer = AIOKafkaConsumer(TICKETS, bootstrap_servers=infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        yield Alerts(consumer)
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
async def db(infra: InfraSettings, app: App) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(infra.postgres_dsn_for(app.settings.database_name))
    try:
        yield pool
    finally:
        await pool.close()


def admin(infra: InfraSettings, ws: str) -> dict[str, str]:
    return bearer(token_for(infra, ws, roles=("admin",)))


def agent(infra: InfraSettings, ws: str) -> dict[str, str]:
    return bearer(token_for(infra, ws, roles=("support",), subject="agent-7"))


async def make_policy(app: App, infra: InfraSettings, ws: str, targets: dict[str, int],
                      warning: dict[str, int] | None = None) -> dict[str, Any]:
    calendar = await app.http.post("/v1/sla/calendars", json=ALWAYS_OPEN, headers=admin(infra, ws))
    assert calendar.status_code == 201, calendar.text
    body: dict[str, Any] = {"name": "Standard", "calendar_id": calendar.json()["id"], "targets": targets}
    if warning:
        body["warning"] = warning
    policy = await app.http.post("/v1/sla/policies", json=body, headers=admin(infra, ws))
    assert policy.status_code == 201, policy.text
    created: dict[str, Any] = policy.json()
    return created


async def open_ticket(app: App, infra: InfraSettings, ws: str) -> dict[str, Any]:
    """A customer's email opens a ticket (now); returns it as GET shows it."""
    contact = str(uuid7())
    await publish(infra, [interaction_event(ws, contact, f"{contact}-1", datetime.now(UTC), subject="Help",
                                            message_id=f"<{contact}@mail.example>")])
    found: list[dict[str, Any]] = []

    async def opened() -> bool:
        response = await app.http.get("/v1/tickets", params={"contact_id": contact}, headers=agent(infra, ws))
        found[:] = response.json()["items"]
        return bool(found)

    await eventually(opened, what="the ticket opened")
    return found[0]


async def sla_of(app: App, infra: InfraSettings, ws: str, ticket_id: str) -> dict[str, Any]:
    response = await app.http.get(f"/v1/tickets/{ticket_id}/sla", headers=agent(infra, ws))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def target(sla: dict[str, Any], name: str, cycle: int = 1) -> dict[str, Any]:
    [found] = [t for t in sla["targets"] if t["target"] == name and t["cycle"] == cycle]
    assert isinstance(found, dict)
    return found


async def test_calendars_and_policies_are_checked_versioned_and_kept_per_workspace(
    app: App, infra: InfraSettings
) -> None:
    ws, other = f"ws-sla-{secrets.token_hex(3)}", f"ws-sla-{secrets.token_hex(3)}"
    bad = await app.http.post("/v1/sla/calendars", headers=admin(infra, ws), json={
        "name": "", "zone": "Mars/Olympus", "week": {"mon": [{"start": "09:00", "end": "12:00"},
                                                             {"start": "11:00", "end": "13:00"}],
                                                     "sun": [{"start": "22:00", "end": "06:00"}]},
        "holidays": [{"date": "2026-02-30"}]})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    fields = {e["field"] for e in bad.json()["errors"]}
    assert {"name", "zone", "week.mon", "week.sun[0]", "holidays[0].date"} <= fields, bad.json()
    as_agent = await app.http.post("/v1/sla/calendars", headers=agent(infra, ws), json=ALWAYS_OPEN)
    assert as_agent.status_code == 403

    policy = await make_policy(app, infra, ws, {"first_response": 3600})
    calendar_id = policy["calendar_id"]
    assert policy["warning"] == {"percent": 80, "before": None}
    bad_policy = await app.http.post("/v1/sla/policies", headers=admin(infra, ws), json={
        "name": " ", "calendar_id": str(uuid7()), "targets": {"resolution": 91 * 86400},
        "conditions": {"priorities": ["whenever"]}, "warning": {"percent": 100}})
    assert bad_policy.status_code == 422
    fields = {e["field"] for e in bad_policy.json()["errors"]}
    wanted = {"name", "calendar_id", "targets.resolution", "conditions.priorities", "warning.percent"}
    assert wanted <= fields, bad_policy.json()
    no_targets = await app.http.post("/v1/sla/policies", headers=admin(infra, ws), json={
        "name": "Empty", "calendar_id": calendar_id, "targets": {}})
    assert no_targets.status_code == 422
    assert [e["field"] for e in no_targets.json()["errors"]] == ["targets"]

    # ETags on writes; a calendar in use cannot go.
    url = f"/v1/sla/calendars/{calendar_id}"
    got = await app.http.get(url, headers=agent(infra, ws))
    assert (got.status_code, got.headers["ETag"], got.json()["zone"]) == (200, '"1"', "UTC")
    renamed = {**ALWAYS_OPEN, "name": "Round the clock"}
    assert (await app.http.put(url, json=renamed, headers=admin(infra, ws))).status_code == 428
    stale = await app.http.put(url, json=renamed, headers=admin(infra, ws) | {"If-Match": '"7"'})
    assert stale.status_code == 412
    put = await app.http.put(url, json=renamed, headers=admin(infra, ws) | {"If-Match": '"1"'})
    assert (put.status_code, put.headers["ETag"], put.json()["name"]) == (200, '"2"', "Round the clock")
    in_use = await app.http.delete(url, headers=admin(infra, ws) | {"If-Match": '"2"'})
    assert in_use.status_code == 409

    # Another workspace sees none of it and can change none of it.
    assert (await app.http.get(url, headers=admin(infra, other))).status_code == 404
    policy_url = f"/v1/sla/policies/{policy['id']}"
    assert (await app.http.get(policy_url, headers=admin(infra, other))).status_code == 404
    assert (await app.http.get("/v1/sla/policies", headers=admin(infra, other))).json()["items"] == []
    assert (await app.http.delete(f"/v1/sla/policies/{policy['id']}",
                                  headers=admin(infra, other) | {"If-Match": '"1"'})).status_code == 404
    foreign = await app.http.post("/v1/sla/policies", headers=admin(infra, other), json={
        "name": "Theirs", "calendar_id": calendar_id, "targets": {"first_response": 60}})
    assert foreign.status_code == 422
    assert [e["field"] for e in foreign.json()["errors"]] == ["calendar_id"]

    gone = await app.http.delete(policy_url, headers=admin(infra, ws) | {"If-Match": '"1"'})
    assert gone.status_code == 204
    assert (await app.http.delete(url, headers=admin(infra, ws) | {"If-Match": '"2"'})).status_code == 204


async def test_a_passed_first_response_deadline_yields_one_warning_and_one_breach_on_time(
    app: App, infra: InfraSettings, alerts: Alerts, db: asyncpg.Pool
) -> None:
    ws = f"ws-sla-{secrets.token_hex(3)}"
    policy = await make_policy(app, infra, ws, {"first_response": 8, "resolution": 3600}, {"percent": 50})
    ticket = await open_ticket(app, infra, ws)
    sla = await sla_of(app, infra, ws, ticket["id"])
    assert sla["policy_id"] == policy["id"]
    first = target(sla, "first_response")
    assert (first["state"], first["breached"], first["met"]) == ("running", False, False)
    deadline = datetime.fromisoformat(first["deadline"])
    assert deadline == datetime.fromisoformat(ticket["created_at"]) + timedelta(seconds=8)

    warning, breach = await alerts.wait_for(ticket["id"], 2)
    assert (warning.type, breach.type) == (SLA_WARNING, SLA_BREACHED)
    for alert in (warning, breach):
        details = alert.alert
        assert (details.target, details.cycle, details.policy_id) == ("first_response", 1, policy["id"])
    assert breach.alert.due_at.ToDatetime(tzinfo=UTC) == deadline
    assert breach.alert.key == f"{ticket['id']}:first_response:breached:1"
    # On time: emitted within a second of the deadline, and on the topic soon after.
    assert 0 <= breach.alert.lag_ms < 1000
    assert breach.received_at - deadline < timedelta(seconds=3)
    sla = await sla_of(app, infra, ws, ticket["id"])
    first = target(sla, "first_response")
    assert (first["breached"], first["met"]) == (True, False)
    assert first["overrun_seconds"] > 0

    # Once each: nothing more comes, and the alert rows say fired.
    await alerts.settle(3)
    assert len(alerts.of(ticket["id"])) == 2
    rows = await db.fetch("SELECT key, fired_at FROM sla_alerts WHERE ticket_id = $1 ORDER BY key",
                          ticket["id"])
    assert {r["key"] for r in rows if r["fired_at"] is not None} == {warning.alert.key, breach.alert.key}

    # The report counts the breach.
    report = await app.http.get("/v1/reports/sla", params={"group_by": "policy"}, headers=agent(infra, ws))
    assert report.status_code == 200, report.text
    [row] = [i for i in report.json()["items"] if i["target"] == "first_response"]
    assert (row["group"], row["met"], row["breached"], row["compliance"]) == (policy["id"], 0, 1, 0.0)
    assert (await app.http.get("/v1/reports/sla", params={"group_by": "mood"},
                               headers=agent(infra, ws))).status_code == 422


async def test_an_agent_reply_stops_first_response_and_a_customer_reply_starts_next_response(
    app: App, infra: InfraSettings, alerts: Alerts, db: asyncpg.Pool
) -> None:
    ws = f"ws-sla-{secrets.token_hex(3)}"
    await make_policy(app, infra, ws, {"first_response": 6, "next_response": 3600, "resolution": 3600})
    ticket = await open_ticket(app, infra, ws)
    reply = await app.http.post(f"/v1/tickets/{ticket['id']}/messages", headers=agent(infra, ws),
                                json={"body": "On it.", "internal": False})
    assert reply.status_code == 201, reply.text

    first = target(await sla_of(app, infra, ws, ticket["id"]), "first_response")
    assert (first["state"], first["met"], first["breached"]) == ("stopped", True, False)
    owed = await db.fetch("SELECT key FROM sla_alerts WHERE ticket_id = $1 AND fired_at IS NULL",
                          ticket["id"])
    assert not [r for r in owed if ":first_response:" in r["key"]]
    assert [r for r in owed if ":resolution:" in r["key"]]

    contact = ticket["contact_id"]
    await publish(infra, [interaction_event(ws, contact, f"{contact}-2", datetime.now(UTC), subject="Re",
                                            message_id=f"<{contact}-2@mail.example>",
                                            in_reply_to=f"<{contact}@mail.example>")])

    async def next_response_running() -> bool:
        sla = await sla_of(app, infra, ws, ticket["id"])
        return any(t["target"] == "next_response" and t["state"] == "running" for t in sla["targets"])

    await eventually(next_response_running, what="the next-response clock")
    past_deadline = datetime.fromisoformat(ticket["created_at"]) + timedelta(seconds=7)
    await asyncio.sleep(max(0.0, (past_deadline - datetime.now(UTC)).total_seconds()))
    await alerts.settle(2)
    assert alerts.of(ticket["id"]) == []


async def test_the_scheduler_rechecks_a_ticket_changed_behind_its_clock_and_fires_nothing_unowed(
    app: App, infra: InfraSettings, alerts: Alerts, db: asyncpg.Pool
) -> None:
    ws = f"ws-sla-{secrets.token_hex(3)}"
    await make_policy(app, infra, ws, {"first_response": 5})
    ticket = await open_ticket(app, infra, ws)
    # A reply written by a path that ran no hook: the stored alerts still say first response is owed.
    await db.execute(
        "INSERT INTO ticket_messages (workspace_id, interaction_id, ticket_id, occurred_at, direction,"
        " author) VALUES ($1, $2, $3, now(), 'reply', 'agent-7')", ws, str(uuid7()), ticket["id"])
    await db.execute("UPDATE tickets SET updated_at = now() WHERE id = $1", ticket["id"])
    assert await db.fetchval("SELECT count(*) FROM sla_alerts WHERE ticket_id = $1 AND fired_at IS NULL",
                             ticket["id"]) == 2

    async def rechecked() -> bool:
        left = await db.fetchval("SELECT count(*) FROM sla_alerts WHERE ticket_id = $1", ticket["id"])
        return bool(left == 0)

    await eventually(rechecked, timeout=20, what="the alerts no longer owed to go")
    await alerts.settle(2)
    assert alerts.of(ticket["id"]) == []
    first = target(await sla_of(app, infra, ws, ticket["id"]), "first_response")
    assert (first["state"], first["met"]) == ("stopped", True)


async def test_pending_pauses_the_clock_and_open_resumes_it_with_a_later_deadline(
    app: App, infra: InfraSettings, db: asyncpg.Pool
) -> None:
    ws = f"ws-sla-{secrets.token_hex(3)}"
    await make_policy(app, infra, ws, {"first_response": 600})
    ticket = await open_ticket(app, infra, ws)
    first = target(await sla_of(app, infra, ws, ticket["id"]), "first_response")
    before = datetime.fromisoformat(first["deadline"])

    paused = await app.http.patch(f"/v1/tickets/{ticket['id']}", json={"status": "pending"},
                                  headers=agent(infra, ws) | {"If-Match": f'"{ticket["version"]}"'})
    assert paused.status_code == 200, paused.text
    first = target(await sla_of(app, infra, ws, ticket["id"]), "first_response")
    assert (first["state"], first["deadline"]) == ("paused", None)
    assert await db.fetchval("SELECT count(*) FROM sla_alerts WHERE ticket_id = $1 AND fired_at IS NULL",
                             ticket["id"]) == 0

    await asyncio.sleep(2)
    resumed = await app.http.patch(f"/v1/tickets/{ticket['id']}", json={"status": "open"},
                                   headers=agent(infra, ws) | {"If-Match": paused.headers["ETag"]})
    assert resumed.status_code == 200, resumed.text
    first = target(await sla_of(app, infra, ws, ticket["id"]), "first_response")
    assert first["state"] == "running"
    assert datetime.fromisoformat(first["deadline"]) - before >= timedelta(seconds=2)
    due = await db.fetchval("SELECT due_at FROM sla_alerts WHERE key = $1",
                            f"{ticket['id']}:first_response:breached:1")
    assert due == datetime.fromisoformat(first["deadline"])


async def test_competing_schedulers_emit_each_alert_once(
    app: App, infra: InfraSettings, alerts: Alerts, db: asyncpg.Pool
) -> None:
    """Two more schedulers on their own pools race the app's for 1,200 overdue tickets."""
    ws = f"ws-sla-{secrets.token_hex(3)}"
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    tickets = [uuid7() for _ in range(1200)]
    await db.executemany(
        "INSERT INTO tickets (id, workspace_id, contact_id, channel, subject, status, created_at)"
        " VALUES ($1, $2, $3, 'email', 'Old', 'open', $4)",
        [(t, ws, uuid7(), long_ago) for t in tickets])
    pools = [await create_pool(infra.postgres_dsn_for(app.settings.database_name)) for _ in range(2)]
    schedulers = [SlaScheduler(PgDatabase(pool), batch=50, max_sleep=0.2) for pool in pools]
    runs = [asyncio.create_task(s.run()) for s in schedulers]
    try:
        # The new policy applies to the open tickets without one: 4 overdue alerts each.
        await make_policy(app, infra, ws, {"first_response": 60, "resolution": 3600})

        async def all_fired() -> bool:
            left = await db.fetchval("SELECT count(*) FROM sla_alerts WHERE ticket_id = ANY($1::uuid[])"
                                     " AND fired_at IS NULL", tickets)
            return bool(left == 0)

        await eventually(all_fired, timeout=60, what="every alert fired")
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        for pool in pools:
            await pool.close()
    keys = {r["key"] for r in await db.fetch("SELECT key FROM sla_alerts WHERE ticket_id = ANY($1::uuid[])",
                                             tickets)}
    assert len(keys) == 4800
    ids = {str(t) for t in tickets}
    deadline = time.monotonic() + 40
    while len({a.alert.key for a in alerts.seen if a.alert.ticket_id in ids}) < 4800:
        assert time.monotonic() < deadline, "not every alert reached the topic"
        await alerts.poll()
    await alerts.settle(2)
    emitted = [a.alert.key for a in alerts.seen if a.alert.ticket_id in ids]
    assert sorted(emitted) == sorted(keys)  # each once
    assert sum(s.fired for s in schedulers) > 0  # the extra schedulers did take part


async def test_a_restarted_app_fires_what_fell_due_while_it_was_down_and_nothing_twice(
    app: App, infra: InfraSettings, alerts: Alerts
) -> None:
    ws = f"ws-sla-{secrets.token_hex(3)}"
    await make_policy(app, infra, ws, {"first_response": 10}, {"before": 5})
    early = await open_ticket(app, infra, ws)
    await alerts.wait_for(early["id"], 2)
    late = await open_ticket(app, infra, ws)
    late_deadline = datetime.fromisoformat(late["created_at"]) + timedelta(seconds=10)

    await app.stop()
    down_until = late_deadline + timedelta(seconds=1)
    await asyncio.sleep(max(0.0, (down_until - datetime.now(UTC)).total_seconds()))
    await app.start()

    warning, breach = await alerts.wait_for(late["id"], 2)
    assert {warning.alert.key, breach.alert.key} == {f"{late['id']}:first_response:warning:1",
                                                     f"{late['id']}:first_response:breached:1"}
    assert breach.alert.lag_ms >= 1000  # it fell due while no scheduler ran
    await alerts.settle(3)
    assert len(alerts.of(early["id"])) == 2
    assert len(alerts.of(late["id"])) == 2

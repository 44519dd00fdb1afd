"""CSAT surveys (the link sent on solve, answered once), saved views with counts, and reports
on a known data set: real PostgreSQL and broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr

from crm.common.v1 import common_pb2
from crm.ingest.v1 import events_pb2 as ingest_events
from crm.ingest.v1 import interaction_pb2, outbound_pb2
from crm.ticketing.v1 import events_pb2
from crm_ticketing.domain.csat import SurveyClaim, sign_token
from crm_ticketing.main import create_app
from crm_ticketing.settings import Settings
from crmkit.ids import uuid7
from crmkit.kafka import Envelope, Event, make_event
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, eventually, free_port, publish, running_app, token_for
from crmkit.topics import INTERACTIONS, OUTBOUND, TICKETS

pytestmark = pytest.mark.integration
SECRET = "csat-test-secret-" + "x" * 32
BASE = "https://help.example"
WS, WS_V, WS_R, WS_OTHER = "ws-csat", "ws-views", "ws-reports", "ws-csat-other"


@pytest.fixture(scope="module")
def settings(infra: InfraSettings) -> Settings:
    return Settings(http_port=free_port(), grpc_port=free_port(), infra=infra,
                    csat_secret=SecretStr(SECRET), public_base_url=BASE,
                    public_csat_rate_per_second=0.1, public_csat_burst=40)


@pytest.fixture(scope="module")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
async def db(settings: Settings, client: httpx.AsyncClient) -> AsyncIterator[asyncpg.Connection]:
    """The service's database, to seed what no API writes yet (agents' replies) and to set
    known times."""
    conn = await asyncpg.connect(settings.infra.postgres_dsn_for(settings.database_name))
    yield conn
    await conn.close()


def agent(infra: InfraSettings, workspace: str = WS, subject: str = "agent-1") -> dict[str, str]:
    return bearer(token_for(infra, workspace, roles=("support",), subject=subject))


def inbound(workspace: str, contact: str, at: datetime, *, subject: str = "Help", channel: str = "email",
            sender: str = "") -> Event:
    """A customer's message as ingest publishes it, with the identity it came from."""
    kind = "IDENTITY_KIND_EMAIL" if channel == "email" else "IDENTITY_KIND_CHAT_VISITOR"
    item = interaction_pb2.Interaction(
        id=str(uuid7()), workspace_id=workspace, contact_id=contact,
        channel=common_pb2.Channel.Value(f"CHANNEL_{channel.upper()}"),
        direction=interaction_pb2.DIRECTION_INBOUND, subject=subject, text="hello",
        kind="INTERACTION_KIND_MESSAGE",
        sender=common_pb2.Identity(kind=kind, value=sender or f"{contact}@x.test"),
        thread=interaction_pb2.ThreadKeys(message_id=f"<{uuid7()}@x.test>"))
    item.occurred_at.FromDatetime(at)
    return make_event(topic=INTERACTIONS, type="crm.interactions.interaction.recorded.v1",
                      source="/crm/ingest",
                      workspace=workspace, subject=contact,
                      payload=ingest_events.InteractionRecorded(interaction=item))


async def open_tickets(client: httpx.AsyncClient, infra: InfraSettings, workspace: str,
                       events: list[Event]) -> list[dict[str, Any]]:
    """Publish the messages and wait for their tickets (one per contact), in the same order."""
    await publish(infra, events)
    found: dict[str, dict[str, Any]] = {}

    async def opened() -> bool:
        for event in events:
            if event.envelope.subject not in found:
                response = await client.get("/v1/tickets", params={"contact_id": event.envelope.subject},
                                            headers=agent(infra, workspace))
                if response.json()["items"]:
                    found[event.envelope.subject] = response.json()["items"][0]
        return len(found) == len(events)

    await eventually(opened, what="the tickets to open")
    return [found[e.envelope.subject] for e in events]


async def set_status(client: httpx.AsyncClient, infra: InfraSettings, ticket: dict[str, Any], status: str,
                     workspace: str = WS, **fields: Any) -> dict[str, Any]:
    current = (await client.get(f"/v1/tickets/{ticket['id']}", headers=agent(infra, workspace))).json()
    response = await client.patch(f"/v1/tickets/{ticket['id']}", json={"status": status, **fields},
                                  headers=agent(infra, workspace) | {"If-Match": f'"{current["version"]}"'})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def add_reply(db: asyncpg.Connection, workspace: str, ticket_id: str, author: str,
                    at: datetime) -> None:
    """An agent's public reply, as the replies use case records it."""
    await db.execute(
        "INSERT INTO ticket_messages (workspace_id, interaction_id, ticket_id, occurred_at, direction,"
        " author, body) VALUES ($1, $2, $3, $4, 'reply', $5, 'thanks')",
        workspace, f"reply-{uuid7()}", UUID(ticket_id), at, author)


async def records(infra: InfraSettings, topic: str, workspace: str, count: int,
                  match: Any = lambda envelope: True) -> list[Envelope]:
    """Read ``topic`` from its start until ``count`` matching records of ``workspace`` came."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    found: list[Envelope] = []
    try:
        async with asyncio.timeout(45):
            while len(found) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    for record in batch:
                        envelope = Envelope.from_record(record.headers, record.value)
                        if envelope.workspace == workspace and match(envelope):
                            found.append(envelope)
    finally:
        await consumer.stop()
    return found


def link_token(text: str) -> str:
    marker = f"{BASE}/v1/public/csat/"
    assert marker in text
    return text.split(marker, 1)[1].split()[0]


async def survey_link(infra: InfraSettings, ticket: dict[str, Any], count: int = 1) -> str:
    """The token of the ``count``-th survey message sent for ``ticket`` on crm.outbound.v1."""
    def survey_of_ticket(envelope: Envelope) -> bool:
        message = outbound_pb2.OutboundMessage.FromString(envelope.data)
        return message.reference.startswith("csat:") and envelope.subject == ticket["contact_id"]

    sent = await records(infra, OUTBOUND, WS, count, survey_of_ticket)
    message = outbound_pb2.OutboundMessage.FromString(sent[count - 1].data)
    assert message.recipient.value == f"{ticket['contact_id']}@x.test"
    assert message.channel == common_pb2.CHANNEL_EMAIL
    assert message.subject.startswith("How did we do?")
    return link_token(message.text)


async def test_a_solve_sends_a_signed_single_use_survey_link(
    client: httpx.AsyncClient, infra: InfraSettings, db: asyncpg.Connection
) -> None:
    a, b, c = await open_tickets(client, infra, WS, [
        inbound(WS, str(uuid7()), datetime.now(UTC), subject="Broken invoice") for _ in range(3)])
    now = datetime.now(UTC)
    await add_reply(db, WS, a["id"], "agent-1", now)
    await add_reply(db, WS, b["id"], "agent-9", now - timedelta(minutes=1))
    await add_reply(db, WS, b["id"], "agent-2", now)  # the last reply's author is credited

    await set_status(client, infra, a, "solved")
    token = await survey_link(infra, a)
    requested = await records(infra, TICKETS, WS, 1, lambda e: e.type == "crm.tickets.csat.requested.v1"
                              and e.subject == a["contact_id"])
    payload = events_pb2.CsatRequested.FromString(requested[0].data)
    assert (payload.ticket_id, payload.agent, payload.channel) == (a["id"], "agent-1", "email")

    listed = (await client.get(f"/v1/tickets/{a['id']}/csat", headers=agent(infra))).json()["items"]
    assert [(s["state"], s["agent"], s["rating"]) for s in listed] == [("pending", "agent-1", None)]
    assert str(payload.survey_id) == listed[0]["id"]

    shown = await client.get(f"/v1/public/csat/{token}")
    assert shown.status_code == 200
    assert shown.json()["subject"] == "Broken invoice"
    assert shown.json()["scale"] == {"min": 1, "max": 5, "good_from": 4}
    assert "id" not in shown.json()

    bad = await client.post(f"/v1/public/csat/{token}", json={"rating": 9, "mood": "x"})
    assert bad.status_code == 422
    assert sorted(e["field"] for e in bad.json()["errors"]) == ["mood", "rating"]
    rated = await client.post(f"/v1/public/csat/{token}", json={"rating": 5, "comment": "Quick and kind"})
    assert rated.status_code == 200, rated.text
    assert (rated.json()["rating"], rated.json()["comment"]) == (5, "Quick and kind")
    again = await client.post(f"/v1/public/csat/{token}", json={"rating": 1})
    assert again.status_code == 410
    assert again.json()["state"] == "rated"
    assert (await client.get(f"/v1/public/csat/{token}")).status_code == 410
    event = await records(infra, TICKETS, WS, 1, lambda e: e.type == "crm.tickets.csat.rated.v1"
                          and e.subject == a["contact_id"])
    answer = events_pb2.CsatRated.FromString(event[0].data)
    assert (answer.rating, answer.comment, answer.agent, answer.ticket_id) == (5, "Quick and kind", "agent-1",
                                                                                a["id"])
    listed = (await client.get(f"/v1/tickets/{a['id']}/csat", headers=agent(infra))).json()["items"]
    assert [(s["state"], s["rating"]) for s in listed] == [("rated", 5)]

    # A forged, altered or unknown link is a 404 and records nothing.
    payload_part, signature = token.split(".")
    tampered = f"{payload_part}.{signature[:-3]}{'AAA' if signature[-3:] != 'AAA' else 'BBB'}"
    unknown = sign_token(SECRET, SurveyClaim(WS, uuid7(), datetime.now(UTC) + timedelta(days=1)))
    forged = sign_token("another-secret-" + "y" * 32, SurveyClaim(WS, UUID(listed[0]["id"]),
                                                                    datetime.now(UTC) + timedelta(days=1)))
    other_ws = sign_token(SECRET, SurveyClaim(WS_OTHER, UUID(listed[0]["id"]), datetime.now(UTC)))
    for wrong in (tampered, unknown, forged, other_ws, "not-a-token-at-all"):
        assert (await client.get(f"/v1/public/csat/{wrong}")).status_code == 404, wrong
        assert (await client.post(f"/v1/public/csat/{wrong}", json={"rating": 3})).status_code == 404

    # A reopen and a second solve ask again: the first link is superseded.
    await set_status(client, infra, b, "solved")
    first = await survey_link(infra, b)
    await set_status(client, infra, b, "open")
    await set_status(client, infra, b, "solved")
    second = await survey_link(infra, b, 2)
    assert first != second
    superseded = await client.post(f"/v1/public/csat/{first}", json={"rating": 4})
    assert (superseded.status_code, superseded.json()["state"]) == (410, "superseded")
    assert (await client.post(f"/v1/public/csat/{second}", json={"rating": 2})).status_code == 200
    states = [s["state"] for s in (await client.get(f"/v1/tickets/{b['id']}/csat",
                                                    headers=agent(infra))).json()["items"]]
    assert states == ["rated", "superseded"]

    # Past its expiry, a link is gone (410), whatever it says itself.
    await set_status(client, infra, c, "solved")
    expiring = await survey_link(infra, c)
    await db.execute("UPDATE csat_surveys SET expires_at = now() - interval '1 second'"
                     " WHERE workspace_id = $1 AND ticket_id = $2", WS, UUID(c["id"]))
    expired = await client.get(f"/v1/public/csat/{expiring}")
    assert (expired.status_code, expired.json()["state"]) == (410, "expired")
    assert (await client.post(f"/v1/public/csat/{expiring}", json={"rating": 5})).status_code == 410

    # Another workspace sees none of it.
    outsider = agent(infra, WS_OTHER)
    assert (await client.get(f"/v1/tickets/{a['id']}/csat", headers=outsider)).status_code == 404

    # The report credits each answer to its agent.
    report = await client.get("/v1/reports/csat", params={"group_by": "agent"}, headers=agent(infra))
    assert report.status_code == 200
    body = report.json()
    assert body["sent"] == 4
    rows = [(r["key"], r["responses"], r["good"], r["good_percent"], r["average"]) for r in body["items"]]
    assert rows == [
        ("agent-1", 1, 1, 100.0, 5.0), ("agent-2", 1, 0, 0.0, 2.0)]
    by_period = (await client.get("/v1/reports/csat", params={"group_by": "period", "interval": "month"},
                                  headers=agent(infra))).json()["items"]
    assert [(r["responses"], r["good"], r["average"]) for r in by_period] == [(2, 1, 3.5)]
    assert by_period[0]["key"] == datetime.now(UTC).strftime("%Y-%m-01T00:00:00Z")
    assert (await client.get("/v1/reports/csat", params={"group_by": "mood"},
                             headers=agent(infra))).status_code == 422


async def test_saved_views_list_count_and_stay_in_their_workspace(
    client: httpx.AsyncClient, infra: InfraSettings
) -> None:
    t = await open_tickets(client, infra, WS_V, [
        inbound(WS_V, str(uuid7()), datetime(2026, 5, 1, 9, i, tzinfo=UTC),
                channel="chat" if i == 3 else "email")
        for i in range(5)])
    await set_status(client, infra, t[0], "open", WS_V, priority="urgent", tags=["vip"])
    await set_status(client, infra, t[1], "open", WS_V, tags=["vip", "billing"])
    await set_status(client, infra, t[2], "pending", WS_V, priority="urgent")
    await set_status(client, infra, t[4], "solved", WS_V, tags=["vip"])
    me, other = agent(infra, WS_V, "agent-1"), agent(infra, WS_V, "agent-2")

    async def create(body: dict[str, Any], headers: dict[str, str] = me) -> dict[str, Any]:
        response = await client.post("/v1/views", json=body, headers=headers)
        assert response.status_code == 201, response.text
        assert response.headers["ETag"] == '"1"'
        created: dict[str, Any] = response.json()
        return created

    open_vip = await create({"name": "Open VIP",
                             "filters": {"status": ["new", "open"], "tags": {"all": ["vip"]}}})
    urgent = await create({"name": "Urgent, oldest first", "filters": {"priority": ["urgent"]},
                           "sort": "created_at"})
    chat = await create({"name": "Chat", "shared": True, "filters": {"channel": ["chat"]}}, other)
    private = await create({"name": "Theirs", "filters": {}}, other)
    await create({"name": "Unassigned", "filters": {"assignee": "unassigned", "status": ["new", "open"]}})

    listed = (await client.get("/v1/views", headers=me)).json()["items"]
    assert [v["name"] for v in listed] == ["Chat", "Open VIP", "Unassigned", "Urgent, oldest first"]
    counts = (await client.get("/v1/views/counts", headers=me)).json()["items"]
    assert {c["name"]: (c["count"], c["capped"]) for c in counts} == {
        "Chat": (1, False), "Open VIP": (2, False), "Unassigned": (3, False),
        "Urgent, oldest first": (2, False)}

    async def page_through(view: dict[str, Any]) -> list[str]:
        ids: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
            response = await client.get(f"/v1/views/{view['id']}/tickets", params=params, headers=me)
            assert response.status_code == 200, response.text
            ids += [i["id"] for i in response.json()["items"]]
            cursor = response.json()["next_cursor"]
            if cursor is None:
                return ids

    assert await page_through(open_vip) == [t[1]["id"], t[0]["id"]]  # newest first
    assert await page_through(urgent) == [t[0]["id"], t[2]["id"]]
    assert await page_through(chat) == [t[3]["id"]]
    bad_cursor = await client.get(f"/v1/views/{urgent['id']}/tickets", params={"cursor": "bm9wZQ"},
                                  headers=me)
    assert bad_cursor.status_code == 422

    # The same filters on the ticket list.
    found = await client.get("/v1/tickets", params={"status": ["open", "pending"], "priority": "urgent"},
                             headers=me)
    assert [i["id"] for i in found.json()["items"]] == [t[2]["id"], t[0]["id"]]
    tagged = await client.get("/v1/tickets", params={"tag": ["vip", "billing"]}, headers=me)
    assert [i["id"] for i in tagged.json()["items"]] == [t[1]["id"]]
    wrong = await client.get("/v1/tickets", params={"status": "done", "channel": "fax", "team_id": "me"},
                             headers=me)
    assert wrong.status_code == 422
    assert sorted(e["field"] for e in wrong.json()["errors"]) == ["channel", "status", "team_id"]
    mine = await client.get("/v1/tickets", params={"assignee": "me"}, headers=me)
    assert mine.json()["items"] == []

    bad = await client.post("/v1/views", json={"name": "", "filters": {"status": ["done"], "colour": 1},
                                               "sort": "priority"}, headers=me)
    assert bad.status_code == 422
    assert sorted(e["field"] for e in bad.json()["errors"]) == [
        "filters.colour", "filters.status", "name", "sort"]

    # Changing: If-Match, the owner only; someone else's private view does not exist for me.
    path = f"/v1/views/{open_vip['id']}"
    assert (await client.patch(path, json={"name": "x"}, headers=me)).status_code == 428
    assert (await client.patch(path, json={"name": "x"}, headers=me | {"If-Match": '"9"'})).status_code == 412
    changed = await client.patch(path, json={"filters": {"status": ["open"], "tags": {"any": ["billing"]}}},
                                 headers=me | {"If-Match": '"1"'})
    assert changed.status_code == 200
    assert changed.headers["ETag"] == '"2"'
    assert await page_through(changed.json()) == [t[1]["id"]]
    assert (await client.patch(f"/v1/views/{chat['id']}", json={"name": "mine"},
                               headers=me | {"If-Match": '"1"'})).status_code == 403
    assert (await client.get(f"/v1/views/{private['id']}", headers=me)).status_code == 404
    outsider = agent(infra, WS_OTHER)
    assert (await client.get(f"/v1/views/{open_vip['id']}", headers=outsider)).status_code == 404
    assert (await client.get(f"/v1/views/{open_vip['id']}/tickets",
                             headers=agent(infra, WS_OTHER))).status_code == 404
    assert (await client.get("/v1/views", headers=agent(infra, WS_OTHER))).json()["items"] == []
    assert (await client.delete(path, headers=me | {"If-Match": '"1"'})).status_code == 412
    assert (await client.delete(path, headers=me | {"If-Match": '"2"'})).status_code == 204
    assert (await client.get(path, headers=me)).status_code == 404


async def test_reports_on_a_known_data_set(
    client: httpx.AsyncClient, infra: InfraSettings, db: asyncpg.Connection
) -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
    created = [day + timedelta(hours=10), day + timedelta(hours=12), day + timedelta(days=1, hours=9),
               day + timedelta(days=7, hours=10), day + timedelta(days=8, hours=10)]
    channels = ["email", "email", "email", "chat", "chat"]
    t = await open_tickets(client, infra, WS_R, [inbound(WS_R, str(uuid7()), at, channel=ch)
                                                  for at, ch in zip(created, channels, strict=True)])
    for ticket, offset in ((t[0], 60), (t[0], 3000), (t[1], 120), (t[2], 600), (t[3], 30)):
        await add_reply(db, WS_R, ticket["id"], "agent-1",
                        datetime.fromisoformat(ticket["created_at"]) + timedelta(seconds=offset))
    for ticket, seconds in ((t[0], 3600), (t[1], 7200), (t[3], 1800)):
        await db.execute("UPDATE tickets SET status = 'solved',"
                         " solved_at = created_at + $3 * interval '1 second'"
                         " WHERE workspace_id = $1 AND id = $2", WS_R, UUID(ticket["id"]), seconds)
    await open_tickets(client, infra, WS_R, [inbound(WS_R, str(uuid7()), datetime.now(UTC))])
    me = agent(infra, WS_R)
    span = {"from": "2026-03-01T00:00:00Z", "to": "2026-03-15T00:00:00Z"}

    daily = (await client.get("/v1/reports/volume", params=span | {"interval": "day"}, headers=me)).json()
    assert [(r["period"][:10], r["channel"], r["tickets"]) for r in daily["items"]] == [
        ("2026-03-02", "email", 2), ("2026-03-03", "email", 1), ("2026-03-09", "chat", 1),
        ("2026-03-10", "chat", 1)]
    weekly = (await client.get("/v1/reports/volume", params=span | {"interval": "week"}, headers=me)).json()
    assert [(r["period"][:10], r["channel"], r["tickets"]) for r in weekly["items"]] == [
        ("2026-03-02", "email", 3), ("2026-03-09", "chat", 2)]

    times = (await client.get("/v1/reports/response-times", params=span, headers=me)).json()
    overall, by_channel = times["overall"], {r["channel"]: r for r in times["by_channel"]}
    assert overall["tickets"] == 5
    # First replies after 30, 60, 120 and 600 s (the second reply of the first ticket does not count).
    assert overall["first_response"] == {"tickets": 4, "median_seconds": 90.0, "p90_seconds": 456.0}
    assert overall["resolution"] == {"tickets": 3, "median_seconds": 3600.0, "p90_seconds": 6480.0}
    email = by_channel["email"]
    assert email["first_response"] == {"tickets": 3, "median_seconds": 120.0, "p90_seconds": 504.0}
    assert email["resolution"] == {"tickets": 2, "median_seconds": 5400.0, "p90_seconds": 6840.0}
    assert by_channel["chat"]["first_response"] == {"tickets": 1, "median_seconds": 30.0, "p90_seconds": 30.0}

    backlog = (await client.get("/v1/reports/backlog", headers=me)).json()
    assert backlog["total"] == 3
    assert sorted((r["status"], r["age"], r["tickets"]) for r in backlog["by_status_and_age"]) == [
        ("new", "0-1d", 1), ("new", "30d+", 2)]

    for params, field in (({"from": "2026-03-15T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
                          ({"from": "2023-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
                          ({"from": "2026-03-01T00:00:00"}, "from")):
        refused = await client.get("/v1/reports/volume", params=params, headers=me)
        assert refused.status_code == 422
        assert [e["field"] for e in refused.json()["errors"]] == [field]
    yearly = await client.get("/v1/reports/volume", params={"interval": "year"}, headers=me)
    assert yearly.status_code == 422
    # Another workspace counts none of these.
    other = (await client.get("/v1/reports/volume", params=span, headers=agent(infra, WS_OTHER))).json()
    assert other["items"] == []


async def test_the_public_link_is_rate_limited_per_address(client: httpx.AsyncClient) -> None:
    statuses = [(await client.get("/v1/public/csat/not-a-token-at-all")).status_code for _ in range(45)]
    assert statuses[0] == 404
    assert statuses[-1] == 429

"""Assignment against real PostgreSQL and the broker: tickets from the stream routed by queues
round-robin and load-balanced within capacity, concurrent routing, an agent going away, a
person's assignment over PATCH, workspace isolation and ticket.assigned events."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from crm.ticketing.v1 import events_pb2
from crm_ticketing.main import create_app
from crm_ticketing.settings import Settings
from crmkit.ids import uuid7
from crmkit.kafka import Envelope
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, eventually, free_port, interaction_event, publish, running_app, token_for
from crmkit.topics import TICKETS

pytestmark = pytest.mark.integration
ASSIGNED = "crm.tickets.ticket.assigned.v1"


@pytest.fixture(scope="module")
async def client(infra: InfraSettings) -> AsyncIterator[httpx.AsyncClient]:
    # Contacts is not running: queues that route on the contact are skipped, nothing blocks.
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra,
                        contacts_grpc_target=f"127.0.0.1:{free_port()}")
    async with running_app(create_app(settings)) as client:
        yield client


@pytest.fixture
async def consumer(infra: InfraSettings) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(TICKETS, bootstrap_servers=infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


def workspace() -> str:
    return f"ws-as-{uuid7().hex[-10:]}"


def admin(infra: InfraSettings, ws: str) -> dict[str, str]:
    return bearer(token_for(infra, ws, roles=("admin",), subject="lead"))


def as_agent(infra: InfraSettings, ws: str, subject: str) -> dict[str, str]:
    return bearer(token_for(infra, ws, roles=("support",), subject=subject))


async def setup(client: httpx.AsyncClient, infra: InfraSettings, ws: str, agents: dict[str, int],
                strategy: str, rules: dict[str, Any] | None = None) -> tuple[str, str]:
    """Agents (id -> capacity, all available), one team of them and one queue; returns their ids."""
    for agent_id, capacity in agents.items():
        response = await client.put(f"/v1/agents/{agent_id}", headers=admin(infra, ws), json={
            "display_name": agent_id.title(), "capacity": capacity, "availability": "available"})
        assert response.status_code == 200, response.text
    team = await client.post("/v1/teams", headers=admin(infra, ws),
                             json={"name": "Support", "members": list(agents)})
    assert team.status_code == 201, team.text
    queue = await client.post("/v1/queues", headers=admin(infra, ws), json={
        "name": "Inbox", "team_id": team.json()["id"], "strategy": strategy, "rules": rules or {},
        "position": 5})
    assert queue.status_code == 201, queue.text
    return team.json()["id"], queue.json()["id"]


async def open_tickets(client: httpx.AsyncClient, infra: InfraSettings, ws: str, count: int,
                       *, assigned: bool = True) -> list[dict[str, Any]]:
    """Customers' emails open ``count`` tickets at once; returns them (oldest first) once every
    one is there (and assigned, unless told otherwise)."""
    contacts = [str(uuid7()) for _ in range(count)]
    await publish(infra, [interaction_event(ws, c, f"{c}-1", datetime.now(UTC), subject="Help",
                                            message_id=f"{c}@x") for c in contacts])
    return await tickets_of(client, infra, ws, contacts, assigned=assigned)


async def tickets_of(client: httpx.AsyncClient, infra: InfraSettings, ws: str, contacts: list[str],
                     *, assigned: bool) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}

    async def there() -> bool:
        response = await client.get("/v1/tickets", params={"limit": 100}, headers=admin(infra, ws))
        found.clear()
        found.update({t["contact_id"]: t for t in response.json()["items"]})
        return all(c in found and (found[c]["assignee"] is not None or not assigned) for c in contacts)

    await eventually(there, what="the tickets opened and routed")
    return [found[c] for c in contacts]


async def get_ticket(client: httpx.AsyncClient, infra: InfraSettings, ws: str, ticket_id: str
                     ) -> dict[str, Any]:
    response = await client.get(f"/v1/tickets/{ticket_id}", headers=admin(infra, ws))
    assert response.status_code == 200
    ticket: dict[str, Any] = response.json()
    return ticket


async def patch(client: httpx.AsyncClient, infra: InfraSettings, ws: str, ticket_id: str,
                body: dict[str, Any]) -> httpx.Response:
    ticket = await get_ticket(client, infra, ws, ticket_id)
    return await client.patch(f"/v1/tickets/{ticket_id}", json=body,
                              headers=admin(infra, ws) | {"If-Match": f'"{ticket["version"]}"'})


async def assigned_events(consumer: AIOKafkaConsumer, ws: str, count: int) -> list[events_pb2.TicketAssigned]:
    found: list[events_pb2.TicketAssigned] = []
    async with asyncio.timeout(45):
        while len(found) < count:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    envelope = Envelope.from_record(record.headers, record.value)
                    if envelope.type == ASSIGNED and envelope.workspace == ws:
                        event = events_pb2.TicketAssigned()
                        event.ParseFromString(envelope.data)
                        found.append(event)
    return found


async def test_tickets_from_the_stream_go_round_robin_and_back_when_their_agent_goes_away(
    client: httpx.AsyncClient, infra: InfraSettings, consumer: AIOKafkaConsumer
) -> None:
    ws = workspace()
    team_id, queue_id = await setup(client, infra, ws, {"agent-a": 10, "agent-b": 10}, "round_robin")
    # Tried first, but it routes on the contact, and contacts does not answer: skipped.
    enterprise = await client.post("/v1/queues", headers=admin(infra, ws), json={
        "name": "Enterprise", "team_id": team_id, "position": 0,
        "rules": {"contact": [{"attribute": "plan", "equals": "enterprise"}]}})
    assert enterprise.status_code == 201, enterprise.text
    opened = [(await open_tickets(client, infra, ws, 1))[0] for _ in range(3)]
    assert [t["assignee"] for t in opened] == ["agent-a", "agent-b", "agent-a"]
    assert {t["team_id"] for t in opened} == {team_id}

    history = await client.get(f"/v1/tickets/{opened[0]['id']}/history", headers=admin(infra, ws))
    changes = {(h["field"], h["new"], h["actor"]) for h in history.json()["items"]}
    assert changes >= {("team_id", team_id, "system"), ("assignee", "agent-a", "system")}

    # A pending ticket of agent-a stays with them; the new and open ones go back to the queue.
    assert (await patch(client, infra, ws, opened[2]["id"], {"status": "pending"})).status_code == 200
    away = await client.put("/v1/agents/me/availability", json={"availability": "away"},
                            headers=as_agent(infra, ws, "agent-a"))
    assert away.status_code == 200, away.text
    assert away.json()["availability"] == "away"
    assert (await get_ticket(client, infra, ws, opened[0]["id"]))["assignee"] == "agent-b"
    assert (await get_ticket(client, infra, ws, opened[2]["id"]))["assignee"] == "agent-a"
    # Nobody else may set agent-a's availability through "me"; an unregistered subject is a 404.
    stranger = await client.put("/v1/agents/me/availability", json={"availability": "available"},
                                headers=as_agent(infra, ws, "agent-z"))
    assert stranger.status_code == 404
    bad = await client.put("/v1/agents/me/availability", json={"availability": "busy"},
                           headers=as_agent(infra, ws, "agent-a"))
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["availability"]

    # The customer answers the pending ticket: open again, it goes back while agent-a is away.
    contact = opened[2]["contact_id"]
    await publish(infra, [interaction_event(ws, contact, f"{contact}-2", datetime.now(UTC),
                                            in_reply_to=f"{contact}@x")])

    async def handed_back() -> bool:
        ticket = await get_ticket(client, infra, ws, opened[2]["id"])
        return (ticket["status"], ticket["assignee"]) == ("open", "agent-b")

    await eventually(handed_back, what="the reopened ticket handed to agent-b")

    events = await assigned_events(consumer, ws, 5)
    routed = [e for e in events if e.reason == "routed"]
    # Each ticket's events are in order; different tickets' may be on different partitions.
    assert {e.ticket.id: e.assignee for e in routed} == {t["id"]: t["assignee"] for t in opened}
    assert all(e.queue_id == queue_id and e.team_id == team_id and e.actor == "system" for e in routed)
    reassigned = {(e.ticket.id, e.previous_assignee, e.assignee) for e in events if e.reason == "reassigned"}
    assert reassigned == {(opened[0]["id"], "agent-a", "agent-b"), (opened[2]["id"], "agent-a", "agent-b")}


async def test_load_balanced_routing_of_concurrent_tickets_respects_capacity(
    client: httpx.AsyncClient, infra: InfraSettings
) -> None:
    ws = workspace()
    await setup(client, infra, ws, {"agent-a": 10, "agent-b": 10, "agent-c": 10}, "load_balanced",
                rules={"tags": ["burst"]})
    # Thirty tickets open unrouted (no tag yet), then thirty concurrent PATCHes tag them, each
    # routing its ticket in its own transaction at the same time.
    tickets = await open_tickets(client, infra, ws, 31, assigned=False)
    assert all(t["assignee"] is None and t["team_id"] is None for t in tickets)
    responses = await asyncio.gather(*(patch(client, infra, ws, t["id"], {"tags": ["burst"]})
                                       for t in tickets[:30]))
    assert all(r.status_code == 200 for r in responses)
    after = [await get_ticket(client, infra, ws, t["id"]) for t in tickets[:30]]
    assert Counter(t["assignee"] for t in after) == {"agent-a": 10, "agent-b": 10, "agent-c": 10}

    # Everyone is full: the 31st waits in the queue, unassigned, until a place frees.
    assert (await patch(client, infra, ws, tickets[30]["id"], {"tags": ["burst"]})).status_code == 200
    waiting = await get_ticket(client, infra, ws, tickets[30]["id"])
    assert waiting["assignee"] is None
    assert waiting["team_id"] is not None
    solved = next(t for t in after if t["assignee"] == "agent-b")
    assert (await patch(client, infra, ws, solved["id"], {"status": "solved"})).status_code == 200
    assert (await get_ticket(client, infra, ws, tickets[30]["id"]))["assignee"] == "agent-b"


async def test_round_robin_under_concurrency_distributes_evenly(client: httpx.AsyncClient,
                                                               infra: InfraSettings) -> None:
    ws = workspace()
    await setup(client, infra, ws, {"agent-a": 100, "agent-b": 100, "agent-c": 100}, "round_robin",
                rules={"tags": ["go"]})
    tickets = await open_tickets(client, infra, ws, 12, assigned=False)
    responses = await asyncio.gather(*(patch(client, infra, ws, t["id"], {"tags": ["go"]}) for t in tickets))
    assert all(r.status_code == 200 for r in responses)
    after = [await get_ticket(client, infra, ws, t["id"]) for t in tickets]
    assert Counter(t["assignee"] for t in after) == {"agent-a": 4, "agent-b": 4, "agent-c": 4}


async def test_a_person_assigns_over_patch_and_unknown_agents_or_teams_are_422(
    client: httpx.AsyncClient, infra: InfraSettings, consumer: AIOKafkaConsumer
) -> None:
    ws = workspace()
    team_id, _ = await setup(client, infra, ws, {"agent-a": 1, "agent-b": 1}, "round_robin",
                             rules={"tags": ["never"]})
    [ticket] = await open_tickets(client, infra, ws, 1, assigned=False)
    assert ticket["assignee"] is None

    unknown = await patch(client, infra, ws, ticket["id"], {"assignee": "agent-x", "team_id": str(uuid7())})
    assert unknown.status_code == 422
    assert {e["field"] for e in unknown.json()["errors"]} == {"assignee", "team_id"}
    assert (await get_ticket(client, infra, ws, ticket["id"]))["version"] == ticket["version"]

    manual = await patch(client, infra, ws, ticket["id"], {"assignee": "agent-b", "team_id": team_id})
    assert manual.status_code == 200, manual.text
    assert (manual.json()["assignee"], manual.json()["team_id"]) == ("agent-b", team_id)
    history = await client.get(f"/v1/tickets/{ticket['id']}/history", headers=admin(infra, ws))
    assert ("assignee", None, "agent-b", "lead") in {
        (h["field"], h["old"], h["new"], h["actor"]) for h in history.json()["items"]}
    [event] = await assigned_events(consumer, ws, 1)
    assert (event.reason, event.assignee, event.previous_assignee, event.actor) == (
        "manual", "agent-b", "", "lead")

    # A deactivated agent can be given nothing, and their open tickets leave them.
    # Back to the team's queue, whose other agent is free.
    assert (await client.delete("/v1/agents/agent-b", headers=admin(infra, ws))).status_code == 204
    assert (await get_ticket(client, infra, ws, ticket["id"]))["assignee"] == "agent-a"
    inactive = await patch(client, infra, ws, ticket["id"], {"assignee": "agent-b"})
    assert inactive.status_code == 422
    assert [e["field"] for e in inactive.json()["errors"]] == ["assignee"]


async def test_definitions_are_checked_and_scoped_to_the_workspace(client: httpx.AsyncClient,
                                                                    infra: InfraSettings) -> None:
    ws, other = workspace(), workspace()
    team_id, queue_id = await setup(client, infra, ws, {"agent-a": 2}, "round_robin")

    hours = await client.put("/v1/agents/agent-h", headers=admin(infra, ws), json={
        "capacity": 2,
        "working_hours": {"zone": "Nowhere/City", "week": {"mon": [{"start": "18:00", "end": "09:00"}]}}})
    assert hours.status_code == 422
    assert {e["field"] for e in hours.json()["errors"]} == {"working_hours"}
    assert (await client.put("/v1/agents/agent-h", headers=as_agent(infra, ws, "agent-h"),
                             json={"capacity": 2})).status_code == 403
    members = await client.post("/v1/teams", headers=admin(infra, ws),
                                json={"name": "X", "members": ["ghost"]})
    assert members.status_code == 422
    duplicate = await client.post("/v1/teams", headers=admin(infra, ws), json={"name": "Support"})
    assert duplicate.status_code == 409
    in_use = await client.delete(f"/v1/teams/{team_id}", headers=admin(infra, ws) | {"If-Match": '"1"'})
    assert in_use.status_code == 409

    # Another workspace sees none of it, changes none of it, and cannot assign to it.
    assert (await client.get("/v1/agents/agent-a", headers=admin(infra, other))).status_code == 404
    assert (await client.get("/v1/agents", headers=admin(infra, other))).json()["items"] == []
    assert (await client.get(f"/v1/teams/{team_id}", headers=admin(infra, other))).status_code == 404
    assert (await client.get(f"/v1/queues/{queue_id}", headers=admin(infra, other))).status_code == 404
    assert (await client.patch(f"/v1/teams/{team_id}", json={"name": "Mine"},
                               headers=admin(infra, other) | {"If-Match": '"1"'})).status_code == 404
    assert (await client.delete(f"/v1/queues/{queue_id}",
                                headers=admin(infra, other) | {"If-Match": '"1"'})).status_code == 404
    foreign_queue = await client.post("/v1/queues", headers=admin(infra, other),
                                      json={"name": "Q", "team_id": team_id})
    assert foreign_queue.status_code == 422
    [ticket] = await open_tickets(client, infra, other, 1, assigned=False)
    foreign = await patch(client, infra, other, ticket["id"], {"assignee": "agent-a"})
    assert foreign.status_code == 422
    assert (await client.get("/v1/agents/agent-a", headers=admin(infra, ws))).json()["version"] == 1

"""Changing a ticket over HTTP (status, priority, type, tags with If-Match), its history, its
events, and a customer's reply reopening it: real PostgreSQL and broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
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
WS = "ws-tu"


@pytest.fixture(scope="module")
async def client(infra: InfraSettings) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra)
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


def agent(infra: InfraSettings, workspace: str = WS) -> dict[str, str]:
    return bearer(token_for(infra, workspace, roles=("support",), subject="agent-7"))


async def open_ticket(client: httpx.AsyncClient, infra: InfraSettings, contact: str,
                      message_id: str) -> dict[str, Any]:
    """A customer's email opens a ticket; returns it as GET shows it, with its ETag."""
    await publish(infra, [interaction_event(WS, contact, f"{contact}-1", datetime.now(UTC), subject="Help",
                                            message_id=message_id)])
    found: list[dict[str, Any]] = []

    async def opened() -> bool:
        response = await client.get("/v1/tickets", params={"contact_id": contact}, headers=agent(infra))
        found[:] = response.json()["items"]
        return bool(found)

    await eventually(opened, what="the ticket opened")
    response = await client.get(f"/v1/tickets/{found[0]['id']}", headers=agent(infra))
    assert response.status_code == 200
    ticket: dict[str, Any] = response.json()
    assert response.headers["ETag"] == f'"{ticket["version"]}"'
    return ticket


async def patch(client: httpx.AsyncClient, infra: InfraSettings, ticket_id: str, body: dict[str, Any],
                version: int | None) -> httpx.Response:
    headers = agent(infra) | ({"If-Match": f'"{version}"'} if version is not None else {})
    return await client.patch(f"/v1/tickets/{ticket_id}", json=body, headers=headers)


async def history(client: httpx.AsyncClient, infra: InfraSettings, ticket_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/tickets/{ticket_id}/history", headers=agent(infra))
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def events_of(consumer: AIOKafkaConsumer, contact: str, count: int) -> list[Envelope]:
    """The ticket events (ticket.*) about the contact's tickets; surveys and SLA alerts on the
    same key are other tests' business."""
    found: list[Envelope] = []

    def take(records: list[Any]) -> list[Envelope]:
        envelopes = [Envelope.from_record(r.headers, r.value) for r in records
                     if r.key == f"{WS}:{contact}".encode()]
        return [e for e in envelopes if e.type.startswith("crm.tickets.ticket.")]

    async with asyncio.timeout(45):
        while len(found) < count:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += take(records)
    await asyncio.sleep(1)  # nothing more is coming
    for records in (await consumer.getmany(timeout_ms=500)).values():
        found += take(records)
    return found


async def test_a_patch_needs_the_current_etag_changes_fields_and_records_history_and_events(
    client: httpx.AsyncClient, infra: InfraSettings, consumer: AIOKafkaConsumer
) -> None:
    contact = str(uuid7())
    ticket = await open_ticket(client, infra, contact, f"{contact}@x")
    assert (ticket["status"], ticket["priority"], ticket["type"], ticket["tags"], ticket["version"]) == (
        "new", "normal", None, [], 1)
    tid = ticket["id"]

    missing = await patch(client, infra, tid, {"priority": "high"}, None)
    assert missing.status_code == 428
    stale = await patch(client, infra, tid, {"priority": "high"}, 7)
    assert stale.status_code == 412
    assert stale.headers["ETag"] == '"1"'

    changed = await patch(client, infra, tid, {"status": "open", "priority": "high", "type": "incident",
                                               "tags": ["VIP", "refund", "vip"]}, 1)
    assert changed.status_code == 200
    assert changed.headers["ETag"] == '"2"'
    body = changed.json()
    assert (body["status"], body["priority"], body["type"], body["tags"]) == (
        "open", "high", "incident", ["vip", "refund"])
    assert (await patch(client, infra, tid, {"status": "pending"}, 1)).status_code == 412
    solved = await patch(client, infra, tid, {"status": "solved", "tags": ["vip", "refund"]}, 2)
    assert solved.status_code == 200
    assert solved.json()["solved_at"] is not None
    assert solved.json()["version"] == 3
    got = await client.get(f"/v1/tickets/{tid}", headers=agent(infra))
    assert got.headers["ETag"] == '"3"'
    assert got.json()["status"] == "solved"

    entries = await history(client, infra, tid)
    assert [(e["field"], e["old"], e["new"], e["actor"]) for e in entries] == [
        ("status", "open", "solved", "agent-7"),
        ("tags", [], ["vip", "refund"], "agent-7"),
        ("type", None, "incident", "agent-7"),
        ("priority", "normal", "high", "agent-7"),
        ("status", "new", "open", "agent-7"),
    ]
    first = (await client.get(f"/v1/tickets/{tid}/history", params={"limit": 2}, headers=agent(infra))).json()
    rest = (await client.get(f"/v1/tickets/{tid}/history", params={"cursor": first["next_cursor"]},
                             headers=agent(infra))).json()
    assert [e["field"] for e in first["items"] + rest["items"]] == [e["field"] for e in entries]
    assert rest["next_cursor"] is None
    forged = await client.get(f"/v1/tickets/{tid}/history", params={"cursor": "garbage"},
                              headers=agent(infra))
    assert forged.status_code == 422

    found = await events_of(consumer, contact, 4)
    assert [e.type for e in found] == ["crm.tickets.ticket.created.v1", "crm.tickets.ticket.updated.v1",
                                       "crm.tickets.ticket.updated.v1", "crm.tickets.ticket.solved.v1"]
    updated = found[1].parse(events_pb2.TicketUpdated)
    assert isinstance(updated, events_pb2.TicketUpdated)
    assert list(updated.changed) == ["status", "priority", "type", "tags"]
    assert updated.actor == "agent-7"
    assert updated.ticket.id == tid
    assert list(updated.fields.tags) == ["vip", "refund"]
    assert updated.fields.priority == events_pb2.TICKET_PRIORITY_HIGH
    assert updated.fields.version == 2
    solved_event = found[3].parse(events_pb2.TicketSolved)
    assert isinstance(solved_event, events_pb2.TicketSolved)
    assert solved_event.fields.HasField("solved_at")


async def test_an_illegal_move_or_bad_fields_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient, infra: InfraSettings
) -> None:
    contact = str(uuid7())
    tid = (await open_ticket(client, infra, contact, f"{contact}@x"))["id"]

    illegal = await patch(client, infra, tid, {"status": "closed", "priority": "urgent"}, 1)
    assert illegal.status_code == 422
    problem = illegal.json()
    assert problem["type"].endswith("/invalid-transition")
    assert (problem["from"], problem["to"]) == ("new", "closed")

    bad = await patch(client, infra, tid, {"status": "done", "priority": "asap", "type": "bug",
                                           "tags": "a b", "colour": "red"}, 1)
    assert bad.status_code == 422
    assert sorted(e["field"] for e in bad.json()["errors"]) == [
        "colour", "priority", "status", "tags", "type"]

    after = (await client.get(f"/v1/tickets/{tid}", headers=agent(infra))).json()
    assert (after["status"], after["priority"], after["version"]) == ("new", "normal", 1)
    assert await history(client, infra, tid) == []

    # A closed ticket is final.
    assert (await patch(client, infra, tid, {"status": "solved"}, 1)).status_code == 200
    assert (await patch(client, infra, tid, {"status": "closed"}, 2)).status_code == 200
    final = await patch(client, infra, tid, {"status": "open"}, 3)
    assert final.status_code == 422
    assert (final.json()["from"], final.json()["to"]) == ("closed", "open")


async def test_a_customer_reply_reopens_a_solved_ticket_once(
    client: httpx.AsyncClient, infra: InfraSettings, consumer: AIOKafkaConsumer
) -> None:
    contact = str(uuid7())
    first = f"first-{contact}@x"
    tid = (await open_ticket(client, infra, contact, first))["id"]
    assert (await patch(client, infra, tid, {"status": "solved"}, 1)).status_code == 200

    reply = interaction_event(WS, contact, f"{contact}-2", datetime.now(UTC), subject="Re: Help",
                              message_id=f"second-{contact}@x", in_reply_to=first, references=(first,))
    await publish(infra, [reply, reply])  # delivered twice

    async def reopened() -> bool:
        ticket = (await client.get(f"/v1/tickets/{tid}", headers=agent(infra))).json()
        return bool(ticket["status"] == "open" and ticket["message_count"] == 2)

    await eventually(reopened, what="the ticket reopened by the reply")
    ticket = (await client.get(f"/v1/tickets/{tid}", headers=agent(infra))).json()
    assert (ticket["version"], ticket["solved_at"]) == (3, None)
    entries = await history(client, infra, tid)
    assert [(e["field"], e["old"], e["new"], e["actor"]) for e in entries] == [
        ("status", "solved", "open", "system"), ("status", "new", "solved", "agent-7")]

    found = await events_of(consumer, contact, 5)
    assert [e.type for e in found] == [
        "crm.tickets.ticket.created.v1", "crm.tickets.ticket.updated.v1", "crm.tickets.ticket.solved.v1",
        "crm.tickets.ticket.updated.v1", "crm.tickets.ticket.reopened.v1"]
    event = found[4].parse(events_pb2.TicketReopened)
    assert isinstance(event, events_pb2.TicketReopened)
    assert (event.actor, event.interaction_id) == ("system", f"{contact}-2")

    # Pending goes back to open on the next reply too.
    assert (await patch(client, infra, tid, {"status": "pending"}, 3)).status_code == 200
    later = datetime.now(UTC) + timedelta(minutes=1)
    await publish(infra, [interaction_event(WS, contact, f"{contact}-3", later, subject="Re: Help",
                                            message_id=f"third-{contact}@x",
                                            in_reply_to=f"second-{contact}@x")])

    async def open_again() -> bool:
        ticket = (await client.get(f"/v1/tickets/{tid}", headers=agent(infra))).json()
        return bool(ticket["status"] == "open" and ticket["message_count"] == 3)

    await eventually(open_again, what="the pending ticket opened by the reply")


async def test_another_workspace_sees_no_such_ticket(client: httpx.AsyncClient, infra: InfraSettings) -> None:
    contact = str(uuid7())
    tid = (await open_ticket(client, infra, contact, f"{contact}@x"))["id"]
    other = agent(infra, "ws-tu-other")
    assert (await client.get(f"/v1/tickets/{tid}", headers=other)).status_code == 404
    assert (await client.get(f"/v1/tickets/{tid}/history", headers=other)).status_code == 404
    response = await client.patch(f"/v1/tickets/{tid}", json={"status": "open"},
                                  headers=other | {"If-Match": '"1"'})
    assert response.status_code == 404
    reader = bearer(token_for(infra, WS, roles=("analyst",)))
    assert (await client.patch(f"/v1/tickets/{tid}", json={"status": "open"},
                               headers=reader | {"If-Match": '"1"'})).status_code == 403
    assert (await client.get(f"/v1/tickets/{tid}", headers=agent(infra))).json()["version"] == 1


async def test_custom_fields_are_defined_by_an_admin_checked_set_cleared_and_kept_in_history(
    client: httpx.AsyncClient, infra: InfraSettings, consumer: AIOKafkaConsumer
) -> None:
    admin = bearer(token_for(infra, WS, roles=("admin",), subject="boss"))
    plan = {"key": f"plan_{uuid7().hex[-6:]}", "label": "Plan", "type": "enum", "options": ["free", "pro"]}
    seats = {"key": f"seats_{uuid7().hex[-6:]}", "label": "Seats", "type": "number"}
    assert (await client.post("/v1/ticket-fields", json=plan, headers=agent(infra))).status_code == 403
    for definition in (plan, seats):
        assert (await client.post("/v1/ticket-fields", json=definition, headers=admin)).status_code == 201
    again = await client.post("/v1/ticket-fields", json=plan, headers=admin)
    assert (again.status_code, again.json()["type"].rsplit("/", 1)[-1]) == (409, "field-exists")
    bad = await client.post("/v1/ticket-fields", json={"key": "Bad Key", "label": "x", "type": "enum"},
                            headers=admin)
    assert sorted(e["field"] for e in bad.json()["errors"]) == ["key", "options"]
    listed = (await client.get("/v1/ticket-fields", headers=agent(infra))).json()["items"]
    assert {plan["key"], seats["key"]} <= {f["key"] for f in listed}

    contact = str(uuid7())
    ticket = await open_ticket(client, infra, contact, f"cf-{contact}@x")
    tid = ticket["id"]
    refused = await patch(client, infra, tid, {"custom_fields": {plan["key"]: "gold", seats["key"]: "ten",
                                                                 "nope": 1}}, 1)
    assert refused.status_code == 422
    assert sorted(e["field"] for e in refused.json()["errors"]) == sorted(
        [f"custom_fields.{plan['key']}", f"custom_fields.{seats['key']}", "custom_fields.nope"])

    done = await patch(client, infra, tid, {"custom_fields": {plan["key"]: "pro", seats["key"]: 12}}, 1)
    assert (done.status_code, done.json()["custom_fields"], done.json()["version"]) == (
        200, {plan["key"]: "pro", seats["key"]: 12}, 2)
    cleared = await patch(client, infra, tid, {"custom_fields": {seats["key"]: None}}, 2)
    assert cleared.json()["custom_fields"] == {plan["key"]: "pro"}
    entries = await history(client, infra, tid)
    assert [(e["field"], e["old"], e["new"]) for e in entries] == [
        (f"custom_fields.{seats['key']}", 12, None),
        (f"custom_fields.{seats['key']}", None, 12), (f"custom_fields.{plan['key']}", None, "pro")]

    found = await events_of(consumer, contact, 3)
    updated = found[-1].parse(events_pb2.TicketUpdated)
    assert isinstance(updated, events_pb2.TicketUpdated)
    assert (list(updated.changed), dict(updated.fields.custom_fields)) == (
        [f"custom_fields.{seats['key']}"], {plan["key"]: "pro"})

    # A removed definition's values are no longer shown.
    assert (await client.delete(f"/v1/ticket-fields/{plan['key']}", headers=admin)).status_code == 204
    shown = (await client.get(f"/v1/tickets/{tid}", headers=agent(infra))).json()
    assert shown["custom_fields"] == {}
    assert (await client.delete(f"/v1/ticket-fields/{plan['key']}", headers=admin)).status_code == 404

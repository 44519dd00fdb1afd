"""The reopen window and follow-up tickets, linked tickets, followers and the workspace's
ticketing settings: real PostgreSQL and broker."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
async def client(infra: InfraSettings) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra)
    async with running_app(create_app(settings)) as client:
        yield client


def agent(infra: InfraSettings, workspace: str) -> dict[str, str]:
    return bearer(token_for(infra, workspace, roles=("support",), subject="agent-3"))


def admin(infra: InfraSettings, workspace: str) -> dict[str, str]:
    return bearer(token_for(infra, workspace, roles=("admin",), subject="boss"))


async def tickets_of(client: httpx.AsyncClient, infra: InfraSettings, workspace: str, contact: str
                     ) -> list[dict[str, Any]]:
    response = await client.get("/v1/tickets", params={"contact_id": contact},
                                headers=agent(infra, workspace))
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def wait_for_tickets(client: httpx.AsyncClient, infra: InfraSettings, workspace: str, contact: str,
                           count: int, messages: int) -> list[dict[str, Any]]:
    """The contact's tickets, newest first, once there are ``count`` holding ``messages`` in all."""
    found: list[dict[str, Any]] = []

    async def there() -> bool:
        found[:] = await tickets_of(client, infra, workspace, contact)
        return len(found) == count and sum(t["message_count"] for t in found) == messages

    await eventually(there, what=f"{count} tickets with {messages} messages")
    return found


async def set_status(client: httpx.AsyncClient, infra: InfraSettings, workspace: str, ticket_id: str,
                     statuses: list[str]) -> None:
    for status in statuses:
        current = await client.get(f"/v1/tickets/{ticket_id}", headers=agent(infra, workspace))
        response = await client.patch(f"/v1/tickets/{ticket_id}", json={"status": status},
                                      headers=agent(infra, workspace) | {"If-Match": current.headers["ETag"]})
        assert response.status_code == 200, response.text


async def test_the_settings_need_an_admin_and_the_current_etag(client: httpx.AsyncClient,
                                                               infra: InfraSettings) -> None:
    ws = f"ws-fu-{uuid7().hex[-8:]}"
    response = await client.get("/v1/settings", headers=agent(infra, ws))
    assert (response.status_code, response.json(), response.headers["ETag"]) == (
        200, {"reopen_window_days": 7, "version": 0}, '"0"')

    body = {"reopen_window_days": 2}
    assert (await client.put("/v1/settings", json=body, headers=agent(infra, ws))).status_code == 403
    assert (await client.put("/v1/settings", json=body, headers=admin(infra, ws))).status_code == 428
    bad = await client.put("/v1/settings", json={"reopen_window_days": 400, "colour": "red"},
                           headers=admin(infra, ws) | {"If-Match": '"0"'})
    assert bad.status_code == 422
    assert sorted(e["field"] for e in bad.json()["errors"]) == ["colour", "reopen_window_days"]

    saved = await client.put("/v1/settings", json=body, headers=admin(infra, ws) | {"If-Match": '"0"'})
    assert (saved.status_code, saved.json(), saved.headers["ETag"]) == (
        200, {"reopen_window_days": 2, "version": 1}, '"1"')
    stale = await client.put("/v1/settings", json={"reopen_window_days": 3},
                             headers=admin(infra, ws) | {"If-Match": '"0"'})
    assert stale.status_code == 412
    other = await client.get("/v1/settings", headers=agent(infra, ws + "-other"))
    assert other.json()["reopen_window_days"] == 7


async def test_a_reply_after_the_window_or_to_a_closed_ticket_opens_a_linked_follow_up(
    client: httpx.AsyncClient, infra: InfraSettings
) -> None:
    ws = f"ws-fu-{uuid7().hex[-8:]}"
    assert (await client.put("/v1/settings", json={"reopen_window_days": 1},
                             headers=admin(infra, ws) | {"If-Match": '"0"'})).status_code == 200
    contact = str(uuid7())
    now = datetime.now(UTC)
    await publish(infra, [interaction_event(ws, contact, f"{contact}-1", now, subject="Broken",
                                            message_id=f"m1-{contact}@x")])
    [first] = await wait_for_tickets(client, infra, ws, contact, 1, 1)
    await set_status(client, infra, ws, first["id"], ["solved"])

    # Within the window the reply reopens the ticket.
    await publish(infra, [interaction_event(ws, contact, f"{contact}-2", now + timedelta(hours=2),
                                            subject="Re: Broken", message_id=f"m2-{contact}@x",
                                            in_reply_to=f"m1-{contact}@x")])
    [reopened] = await wait_for_tickets(client, infra, ws, contact, 1, 2)
    assert reopened["status"] == "open"

    # Two days after the solve the same thread opens a follow-up, delivered twice: one ticket.
    await set_status(client, infra, ws, first["id"], ["solved"])
    late = interaction_event(ws, contact, f"{contact}-3", now + timedelta(days=2), subject="Re: Broken",
                             message_id=f"m3-{contact}@x", in_reply_to=f"m2-{contact}@x")
    await publish(infra, [late, late])
    follow_up, old = await wait_for_tickets(client, infra, ws, contact, 2, 3)
    assert (old["id"], old["status"], old["message_count"]) == (first["id"], "solved", 2)
    assert (follow_up["status"], follow_up["message_count"], follow_up["subject"]) == ("new", 1, "Re: Broken")

    links = (await client.get(f"/v1/tickets/{follow_up['id']}/links",
                              headers=agent(infra, ws))).json()["items"]
    assert [(link["ticket_id"], link["kind"], link["direction"], link["created_by"]) for link in links] == [
        (first["id"], "follow_up", "to", "system")]
    back = (await client.get(f"/v1/tickets/{first['id']}/links", headers=agent(infra, ws))).json()["items"]
    assert [(link["ticket_id"], link["direction"]) for link in back] == [(follow_up["id"], "from")]

    # The next reply in the thread goes to the follow-up; the finished ticket stays as it was.
    await publish(infra, [interaction_event(ws, contact, f"{contact}-4", now + timedelta(days=2, hours=1),
                                            subject="Re: Broken", message_id=f"m4-{contact}@x",
                                            in_reply_to=f"m3-{contact}@x")])
    follow_up, old = await wait_for_tickets(client, infra, ws, contact, 2, 4)
    assert (follow_up["message_count"], old["message_count"], old["status"]) == (2, 2, "solved")

    # A closed ticket is final: a reply the same minute opens a follow-up too.
    await set_status(client, infra, ws, follow_up["id"], ["solved", "closed"])
    await publish(infra, [interaction_event(ws, contact, f"{contact}-5", now + timedelta(days=2, hours=2),
                                            subject="Re: Broken", message_id=f"m5-{contact}@x",
                                            in_reply_to=f"m4-{contact}@x")])
    newest, closed, _ = await wait_for_tickets(client, infra, ws, contact, 3, 5)
    assert (closed["id"], closed["status"], newest["status"]) == (follow_up["id"], "closed", "new")


async def test_a_chat_after_a_closed_ticket_continues_in_its_follow_up(
    client: httpx.AsyncClient, infra: InfraSettings
) -> None:
    ws = f"ws-fu-{uuid7().hex[-8:]}"
    contact, session = str(uuid7()), f"session-{uuid7().hex}"
    now = datetime.now(UTC)

    def chat(n: int) -> Any:
        return interaction_event(ws, contact, f"{contact}-{n}", now + timedelta(minutes=n), channel="chat",
                                 conversation_id=session, sender=("chat_visitor", f"visitor-{contact}"))

    await publish(infra, [chat(1)])
    [first] = await wait_for_tickets(client, infra, ws, contact, 1, 1)
    assert first["channel"] == "chat"
    await set_status(client, infra, ws, first["id"], ["solved", "closed"])
    await publish(infra, [chat(2)])
    await wait_for_tickets(client, infra, ws, contact, 2, 2)
    await publish(infra, [chat(3)])
    follow_up, old = await wait_for_tickets(client, infra, ws, contact, 2, 3)
    assert (follow_up["message_count"], old["message_count"]) == (2, 1)


async def test_ticket_created_names_the_ticket_it_follows_up(client: httpx.AsyncClient,
                                                             infra: InfraSettings) -> None:
    ws = f"ws-fu-{uuid7().hex[-8:]}"
    contact = str(uuid7())
    consumer = AIOKafkaConsumer(TICKETS, bootstrap_servers=infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        await publish(infra, [interaction_event(ws, contact, f"{contact}-1", datetime.now(UTC),
                                                message_id=f"a-{contact}@x")])
        [first] = await wait_for_tickets(client, infra, ws, contact, 1, 1)
        await set_status(client, infra, ws, first["id"], ["solved", "closed"])
        await publish(infra, [interaction_event(ws, contact, f"{contact}-2", datetime.now(UTC),
                                                message_id=f"b-{contact}@x", in_reply_to=f"a-{contact}@x")])
        follow_up, _ = await wait_for_tickets(client, infra, ws, contact, 2, 2)

        created: dict[str, events_pb2.TicketCreated] = {}

        async def both_created() -> bool:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    envelope = Envelope.from_record(list(record.headers or ()), record.value)
                    if envelope.subject == contact and envelope.type == "crm.tickets.ticket.created.v1":
                        event = envelope.parse(events_pb2.TicketCreated)
                        assert isinstance(event, events_pb2.TicketCreated)
                        created[event.ticket.id] = event
            return len(created) == 2

        await eventually(both_created, what="both tickets' created events")
        assert (created[first["id"]].follow_up_of, created[follow_up["id"]].follow_up_of) == ("", first["id"])
    finally:
        await consumer.stop()


async def test_agents_link_tickets_of_their_workspace_and_follow_them(client: httpx.AsyncClient,
                                                                      infra: InfraSettings) -> None:
    ws = f"ws-fu-{uuid7().hex[-8:]}"
    contact = str(uuid7())
    now = datetime.now(UTC)
    await publish(infra, [interaction_event(ws, contact, f"{contact}-{n}", now + timedelta(seconds=n),
                                            message_id=f"{n}-{contact}@x") for n in (1, 2)])
    second, first = await wait_for_tickets(client, infra, ws, contact, 2, 2)
    headers = agent(infra, ws)

    linked = await client.post(f"/v1/tickets/{first['id']}/links", json={"ticket_id": second["id"]},
                               headers=headers)
    assert linked.status_code == 200
    assert [(x["ticket_id"], x["kind"], x["created_by"]) for x in linked.json()["items"]] == [
        (second["id"], "related", "agent-3")]
    again = await client.post(f"/v1/tickets/{second['id']}/links", json={"ticket_id": first["id"]},
                              headers=headers)
    assert [(x["ticket_id"], x["direction"]) for x in again.json()["items"]] == [(first["id"], "from")]
    itself = await client.post(f"/v1/tickets/{first['id']}/links", json={"ticket_id": first["id"]},
                               headers=headers)
    assert itself.status_code == 422

    # Another workspace's ticket cannot be linked, and the links are not seen from there.
    stranger = str(uuid7())
    await publish(infra, [interaction_event(ws + "-b", stranger, f"{stranger}-1", now,
                                            message_id=f"{stranger}@x")])
    [theirs] = await wait_for_tickets(client, infra, ws + "-b", stranger, 1, 1)
    foreign = await client.post(f"/v1/tickets/{first['id']}/links", json={"ticket_id": theirs["id"]},
                                headers=headers)
    assert (foreign.status_code, foreign.json()["errors"][0]["field"]) == (422, "ticket_id")
    assert (await client.get(f"/v1/tickets/{first['id']}/links",
                             headers=agent(infra, ws + "-b"))).status_code == 404

    assert (await client.delete(f"/v1/tickets/{second['id']}/links/{first['id']}",
                                headers=headers)).status_code == 204
    assert (await client.get(f"/v1/tickets/{first['id']}/links", headers=headers)).json()["items"] == []
    assert (await client.delete(f"/v1/tickets/{second['id']}/links/{first['id']}",
                                headers=headers)).status_code == 404

    assert (await client.put(f"/v1/tickets/{first['id']}/followers/me", headers=headers)).json()["items"] == [
        "agent-3"]
    followed = await client.put(f"/v1/tickets/{first['id']}/followers/agent-9", headers=headers)
    assert followed.json()["items"] == ["agent-3", "agent-9"]
    left = await client.delete(f"/v1/tickets/{first['id']}/followers/me", headers=headers)
    assert left.json()["items"] == ["agent-9"]
    assert (await client.put(f"/v1/tickets/{theirs['id']}/followers/me", headers=headers)).status_code == 404

"""Agents' replies and notes, collisions, delivery feedback from ingest, the ticket token
fallback, and macros: ticketing and contacts running against real PostgreSQL and the broker;
ingest is played by the test (it reads crm.outbound.v1 and publishes what ingest would)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from crm.common.v1 import common_pb2
from crm.ingest.v1 import events_pb2 as ingest_events
from crm.ingest.v1 import interaction_pb2, outbound_pb2
from crm.ticketing.v1 import events_pb2 as ticketing_events
from crm_contacts.main import create_app as create_contacts
from crm_contacts.settings import Settings as ContactsSettings
from crm_ticketing.domain.replies import ticket_token
from crm_ticketing.main import create_app
from crm_ticketing.settings import Settings
from crmkit.ids import uuid7
from crmkit.kafka import Envelope, make_event
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, eventually, free_port, interaction_event, publish, running_app, token_for
from crmkit.topics import INTERACTIONS, OUTBOUND, TICKETS

pytestmark = pytest.mark.integration


@dataclass
class Apps:
    contacts: httpx.AsyncClient
    tickets: httpx.AsyncClient


@pytest.fixture(scope="module")
async def apps(infra: InfraSettings) -> AsyncIterator[Apps]:
    # Contacts with its own database and consumer group, so that it shares nothing with other
    # modules' contacts apps; ticketing reads the requester's name from it for macros.
    contacts_infra = infra.model_copy(update={"database_prefix": f"{infra.database_prefix}tr_",
                                              "consumer_group_prefix": f"{infra.consumer_group_prefix}tr."})
    contacts_settings = ContactsSettings(http_port=free_port(), grpc_port=free_port(), infra=contacts_infra)
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra,
                        contacts_grpc_target=f"127.0.0.1:{contacts_settings.grpc_port}")
    async with running_app(create_contacts(contacts_settings)) as contacts, \
            running_app(create_app(settings)) as tickets:
        yield Apps(contacts, tickets)


@pytest.fixture
async def outbound(infra: InfraSettings) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(OUTBOUND, bootstrap_servers=infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


@pytest.fixture
async def tickets_topic(infra: InfraSettings) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(TICKETS, bootstrap_servers=infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def events_of(consumer: AIOKafkaConsumer, ws: str, contact: str) -> list[Envelope]:
    """The events about the contact published so far (what came within a few seconds)."""
    found: list[Envelope] = []
    deadline = asyncio.get_running_loop().time() + 5
    while asyncio.get_running_loop().time() < deadline:
        for records in (await consumer.getmany(timeout_ms=500)).values():
            found += [Envelope.from_record(r.headers, r.value) for r in records
                      if r.key == f"{ws}:{contact}".encode()]
    return found


def workspace() -> str:
    return f"ws-re-{secrets.token_hex(4)}"


def agent(infra: InfraSettings, ws: str, subject: str = "agent-7") -> dict[str, str]:
    return bearer(token_for(infra, ws, roles=("support",), subject=subject))


async def open_ticket(apps: Apps, infra: InfraSettings, ws: str, contact: str, *,
                      subject: str = "Printer on fire", message_id: str = "",
                      address: str = "ada@example.com") -> dict[str, Any]:
    """A customer's email opens a ticket; returns it."""
    await publish(infra, [interaction_event(ws, contact, str(uuid7()), datetime.now(UTC), subject=subject,
                                            message_id=message_id or f"<c1-{contact}@mail.example>",
                                            sender=("email", address), text="It burns")])
    return await only_ticket(apps, infra, ws, contact)


async def tickets_of(apps: Apps, infra: InfraSettings, ws: str, contact: str) -> list[dict[str, Any]]:
    page = await apps.tickets.get("/v1/tickets", params={"contact_id": contact}, headers=agent(infra, ws))
    items: list[dict[str, Any]] = page.json()["items"]
    return items


async def only_ticket(apps: Apps, infra: InfraSettings, ws: str, contact: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def opened() -> bool:
        found[:] = await tickets_of(apps, infra, ws, contact)
        return bool(found)

    await eventually(opened, what="the ticket opened")
    assert len(found) == 1
    return found[0]


async def messages(apps: Apps, infra: InfraSettings, ws: str, ticket_id: str) -> list[dict[str, Any]]:
    response = await apps.tickets.get(f"/v1/tickets/{ticket_id}/messages", headers=agent(infra, ws))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def wait_for_messages(apps: Apps, infra: InfraSettings, ws: str, ticket_id: str, count: int
                            ) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        found[:] = await messages(apps, infra, ws, ticket_id)
        return len(found) >= count

    await eventually(arrived, what=f"{count} messages in the ticket")
    return found


async def sent(consumer: AIOKafkaConsumer, ws: str, contact: str, count: int
               ) -> list[outbound_pb2.OutboundMessage]:
    """The OutboundMessages for the contact not taken yet (waits for ``count``, then a little
    longer to see that nothing else comes)."""
    found: list[outbound_pb2.OutboundMessage] = []

    def take(batch: dict[Any, list[Any]]) -> None:
        for records in batch.values():
            for record in records:
                if record.key == f"{ws}:{contact}".encode():
                    envelope = Envelope.from_record(record.headers, record.value)
                    message = envelope.parse(outbound_pb2.OutboundMessage)
                    assert isinstance(message, outbound_pb2.OutboundMessage)
                    found.append(message)

    async with asyncio.timeout(45):
        while len(found) < count:
            take(await consumer.getmany(timeout_ms=500))
    await asyncio.sleep(1)
    take(await consumer.getmany(timeout_ms=500))
    return found


def ingest_sent(ws: str, contact: str, outbound_id: str, message_id: str) -> list[Any]:
    """What ingest publishes once it sent an OutboundMessage: the outbound interaction, and
    ``sent``."""
    item = interaction_pb2.Interaction(
        id=str(uuid7()), workspace_id=ws, contact_id=contact, channel=common_pb2.CHANNEL_EMAIL,
        direction=interaction_pb2.DIRECTION_OUTBOUND, kind=interaction_pb2.INTERACTION_KIND_MESSAGE,
        subject="Re: Printer on fire", text="reply", outbound_id=outbound_id,
        thread=interaction_pb2.ThreadKeys(message_id=message_id))
    item.occurred_at.FromDatetime(datetime.now(UTC))
    return [
        make_event(topic=INTERACTIONS, type="crm.interactions.interaction.recorded.v1",
                   source="/crm/ingest", workspace=ws, subject=contact,
                   payload=ingest_events.InteractionRecorded(interaction=item)),
        delivery(ws, contact, outbound_id, "sent", item.id),
    ]


def delivery(ws: str, contact: str, outbound_id: str, status: str, interaction_id: str = "") -> Any:
    update = ingest_events.DeliveryUpdated(interaction_id=interaction_id, contact_id=contact,
                                           channel=common_pb2.CHANNEL_EMAIL, status=status,
                                           outbound_id=outbound_id, origin="ticketing", reference="x")
    update.at.FromDatetime(datetime.now(UTC))
    return make_event(topic=INTERACTIONS, type="crm.interactions.delivery.updated.v1", source="/crm/ingest",
                      workspace=ws, subject=contact, payload=update)


async def test_a_reply_goes_out_threaded_a_note_never_does_and_the_customers_answer_continues_the_ticket(
    apps: Apps, infra: InfraSettings, outbound: AIOKafkaConsumer, tickets_topic: AIOKafkaConsumer
) -> None:
    ws, contact = workspace(), str(uuid7())
    first_id = f"<c1-{contact}@mail.example>"
    ticket = await open_ticket(apps, infra, ws, contact, message_id=first_id)
    tid = ticket["id"]
    [inbound] = await messages(apps, infra, ws, tid)
    assert (inbound["direction"], inbound["body"], inbound["delivery_status"]) == (
        "inbound", "It burns", None)

    replied = await apps.tickets.post(f"/v1/tickets/{tid}/messages", headers=agent(infra, ws),
                                      json={"body": "We are on it.", "after": inbound["id"]})
    assert replied.status_code == 201, replied.text
    reply = replied.json()["message"]
    assert (reply["direction"], reply["author"], reply["delivery_status"]) == ("reply", "agent-7", "queued")
    assert replied.json()["ticket"]["status"] == "open"  # a reply opens a new ticket

    noted = await apps.tickets.post(f"/v1/tickets/{tid}/messages", headers=agent(infra, ws),
                                    json={"body": "Customer is VIP", "internal": True,
                                          "attachments": [{"ref": "files/1", "filename": "a.png"}]})
    assert noted.status_code == 201, noted.text
    assert noted.json()["message"]["direction"] == "note"

    token = ticket_token(UUID(tid))
    [out] = await sent(outbound, ws, contact, 1)
    assert out.id == reply["id"]
    assert (out.recipient.kind, out.recipient.value) == (common_pb2.IDENTITY_KIND_EMAIL, "ada@example.com")
    assert out.subject == f"Re: Printer on fire [#{token}]"
    assert (out.thread.in_reply_to, list(out.thread.references)) == (first_id, [first_id])
    assert (out.text, out.origin, out.reference) == ("We are on it.", "ticketing", tid)

    # Ingest sends it as <a1>; the customer answers that email.
    agent_mail = f"<a1-{contact}@crm.example>"
    await publish(infra, ingest_sent(ws, contact, reply["id"], agent_mail))
    later_id = f"<c2-{contact}@mail.example>"
    await publish(infra, [interaction_event(ws, contact, str(uuid7()), datetime.now(UTC), subject="Re: fire",
                                            message_id=later_id, in_reply_to=agent_mail,
                                            sender=("email", "ada@example.com"), text="Still burning")])
    found = await wait_for_messages(apps, infra, ws, tid, 4)
    assert [(m["direction"], m["body"]) for m in found] == [
        ("inbound", "It burns"), ("reply", "We are on it."), ("note", "Customer is VIP"),
        ("inbound", "Still burning")]
    assert found[1]["delivery_status"] == "sent"
    assert found[2]["attachments"] == [{"ref": "files/1", "filename": "a.png", "content_type": None,
                                        "size": None}]
    assert len(await tickets_of(apps, infra, ws, contact)) == 1

    # A bounce wins; a late "delivered" does not undo it.
    await publish(infra, [delivery(ws, contact, reply["id"], "bounced"),
                          delivery(ws, contact, reply["id"], "delivered")])

    async def bounced() -> bool:
        status: str = (await messages(apps, infra, ws, tid))[1]["delivery_status"]
        return status == "bounced"

    await eventually(bounced, what="the bounce")

    # The next reply answers the customer's latest message, with the whole chain.
    again = await apps.tickets.post(f"/v1/tickets/{tid}/messages", headers=agent(infra, ws),
                                    json={"body": "Try water.", "status": "pending"})
    assert again.status_code == 201, again.text
    assert again.json()["ticket"]["status"] == "pending"
    [second] = await sent(outbound, ws, contact, 1)  # and the note never went out
    assert second.thread.in_reply_to == later_id
    assert list(second.thread.references) == [first_id, agent_mail, later_id]
    history = (await apps.tickets.get(f"/v1/tickets/{tid}/history", headers=agent(infra, ws))).json()
    statuses = [(h["old"], h["new"], h["actor"]) for h in history["items"] if h["field"] == "status"]
    assert statuses == [("open", "pending", "agent-7"), ("new", "open", "agent-7")]

    url = f"/v1/tickets/{tid}/messages"
    page = await apps.tickets.get(url, params={"limit": 2}, headers=agent(infra, ws))
    rest = await apps.tickets.get(url, params={"cursor": page.json()["next_cursor"]},
                                  headers=agent(infra, ws))
    assert len(page.json()["items"]) + len(rest.json()["items"]) == 5
    assert rest.json()["next_cursor"] is None

    published = await events_of(tickets_topic, ws, contact)
    payloads = [e.parse(ticketing_events.TicketMessageAdded) for e in published
                if e.type == "crm.tickets.message.added.v1"]
    assert [(p.kind, p.author, p.ticket_id) for p in payloads] == [  # type: ignore[attr-defined]
        ("reply", "agent-7", tid), ("note", "agent-7", tid), ("reply", "agent-7", tid)]


async def test_a_reply_collides_with_what_others_wrote_since_and_concurrent_replies_let_one_through(
    apps: Apps, infra: InfraSettings
) -> None:
    ws, contact = workspace(), str(uuid7())
    tid = (await open_ticket(apps, infra, ws, contact))["id"]
    [seen] = await messages(apps, infra, ws, tid)
    url = f"/v1/tickets/{tid}/messages"

    first = await apps.tickets.post(url, headers=agent(infra, ws, "agent-a"),
                                    json={"body": "A answers", "after": seen["id"]})
    assert first.status_code == 201
    late = await apps.tickets.post(url, headers=agent(infra, ws, "agent-b"),
                                   json={"body": "B answers", "after": seen["id"]})
    assert late.status_code == 409, late.text
    problem = late.json()
    assert problem["type"].endswith("/collision")
    assert [(m["id"], m["author"]) for m in problem["messages"]] == [
        (first.json()["message"]["id"], "agent-a")]
    assert len(await messages(apps, infra, ws, tid)) == 2  # nothing written
    # A's own later note does not collide with A.
    own = await apps.tickets.post(url, headers=agent(infra, ws, "agent-a"),
                                  json={"body": "note to self", "internal": True, "after": seen["id"]})
    assert own.status_code == 201
    forced = await apps.tickets.post(url, headers=agent(infra, ws, "agent-b"),
                                     json={"body": "B anyway", "after": seen["id"], "force": True})
    assert forced.status_code == 201

    last = forced.json()["message"]["id"]
    results = await asyncio.gather(*(
        apps.tickets.post(url, headers=agent(infra, ws, who), json={"body": f"{who} at once", "after": last})
        for who in ("agent-c", "agent-d")))
    assert sorted(r.status_code for r in results) == [201, 409]
    assert len(await messages(apps, infra, ws, tid)) == 5

    unknown = await apps.tickets.post(url, headers=agent(infra, ws), json={"body": "x", "after": "nope"})
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["after"]


async def test_bad_messages_are_422_and_other_workspaces_see_nothing(
    apps: Apps, infra: InfraSettings
) -> None:
    ws, contact = workspace(), str(uuid7())
    tid = (await open_ticket(apps, infra, ws, contact))["id"]
    url = f"/v1/tickets/{tid}/messages"
    empty = await apps.tickets.post(url, headers=agent(infra, ws), json={"body": "  ", "internal": "no"})
    assert empty.status_code == 422
    assert sorted(e["field"] for e in empty.json()["errors"]) == ["body", "internal"]
    files = await apps.tickets.post(url, headers=agent(infra, ws),
                                    json={"body": "see file", "attachments": [{"ref": "f"}]})
    assert [e["field"] for e in files.json()["errors"]] == ["attachments"]
    status = await apps.tickets.post(url, headers=agent(infra, ws), json={"body": "x", "status": "bogus"})
    assert status.status_code == 422
    move = await apps.tickets.post(url, headers=agent(infra, ws), json={"body": "x", "status": "closed"})
    assert (move.status_code, move.json()["type"].split("/")[-1]) == (422, "invalid-transition")
    assert len(await messages(apps, infra, ws, tid)) == 1

    other = agent(infra, workspace())
    assert (await apps.tickets.get(url, headers=other)).status_code == 404
    assert (await apps.tickets.post(url, headers=other, json={"body": "hi"})).status_code == 404
    reader = bearer(token_for(infra, ws, roles=("analyst",)))
    assert (await apps.tickets.post(url, headers=reader, json={"body": "hi"})).status_code == 403
    assert len(await messages(apps, infra, ws, tid)) == 1


async def test_the_subject_token_threads_a_headerless_email_and_the_subject_alone_does_not(
    apps: Apps, infra: InfraSettings
) -> None:
    ws, contact = workspace(), str(uuid7())
    tid = (await open_ticket(apps, infra, ws, contact, subject="Refund please"))["id"]
    token = ticket_token(UUID(tid))
    await publish(infra, [interaction_event(ws, contact, str(uuid7()), datetime.now(UTC),
                                            subject=f"Re: Refund please [#{token}]",
                                            message_id=f"<t-{contact}@mail.example>",
                                            sender=("email", "ada@example.com"), text="with token")])
    await wait_for_messages(apps, infra, ws, tid, 2)
    await publish(infra, [interaction_event(ws, contact, str(uuid7()), datetime.now(UTC),
                                            subject="Re: Refund please",
                                            message_id=f"<n-{contact}@mail.example>",
                                            sender=("email", "ada@example.com"), text="no token")])

    async def second_ticket() -> bool:
        return len(await tickets_of(apps, infra, ws, contact)) == 2

    await eventually(second_ticket, what="a new ticket for the same subject without a token")
    assert [m["body"] for m in await messages(apps, infra, ws, tid)] == ["It burns", "with token"]


async def test_a_macro_renders_the_requester_and_ticket_and_applies_everything_in_one_go(
    apps: Apps, infra: InfraSettings, outbound: AIOKafkaConsumer
) -> None:
    ws = workspace()
    admin = bearer(token_for(infra, ws, roles=("admin",)))
    created = await apps.contacts.post("/v1/contacts", headers=admin,
                                       json={"first_name": "Ada", "emails": ["ada@example.com"]})
    assert created.status_code == 201, created.text
    contact = created.json()["id"]
    tid = (await open_ticket(apps, infra, ws, contact))["id"]
    headers = agent(infra, ws)

    bad = await apps.tickets.post("/v1/macros", headers=headers, json={
        "name": "Bad", "body": "Hi {{contact.shoe_size}}", "actions": {"status": "sideways"}})
    assert bad.status_code == 422
    assert sorted(e["field"] for e in bad.json()["errors"]) == ["actions.status", "body"]

    made = await apps.tickets.post("/v1/macros", headers=headers, json={
        "name": "Refund on its way",
        "body": 'Hi {{contact.first_name|default("there")}}, your "{{ticket.subject}}" refund is on its way. '
                "{{agent.name}}",
        "actions": {"status": "pending", "priority": "high", "add_tags": ["refund"]}})
    assert made.status_code == 201, made.text
    macro = made.json()
    assert made.headers["ETag"] == '"1"'
    taken = await apps.tickets.post("/v1/macros", headers=headers,
                                    json={"name": "refund ON its way", "body": "x"})
    assert taken.status_code == 409

    applied = await apps.tickets.post(f"/v1/tickets/{tid}/macros/{macro['id']}", headers=headers)
    assert applied.status_code == 200, applied.text
    body = applied.json()
    assert body["message"]["body"] == 'Hi Ada, your "Printer on fire" refund is on its way. agent-7'
    assert body["message"]["macro_id"] == macro["id"]
    assert (body["ticket"]["status"], body["ticket"]["priority"], body["ticket"]["tags"]) == (
        "pending", "high", ["refund"])
    [out] = await sent(outbound, ws, contact, 1)
    assert out.text == body["message"]["body"]
    assert out.subject.startswith("Re: Printer on fire [#")
    history = (await apps.tickets.get(f"/v1/tickets/{tid}/history", headers=headers)).json()["items"]
    mine = [h for h in history if h["field"] in ("priority", "status", "tags")]
    assert sorted((h["field"], h["new"]) for h in mine) == [
        ("priority", "high"), ("status", "pending"), ("tags", ["refund"])]
    assert {h["actor"] for h in mine} == {"agent-7"}

    # All or nothing: a macro whose status the ticket cannot take writes no message either.
    stuck = await apps.tickets.post("/v1/macros", headers=headers, json={
        "name": "Reset", "body": "Back to the start", "actions": {"status": "new"}})
    refused = await apps.tickets.post(f"/v1/tickets/{tid}/macros/{stuck.json()['id']}", headers=headers)
    assert refused.status_code == 422
    assert len(await messages(apps, infra, ws, tid)) == 2
    assert await sent(outbound, ws, contact, 0) == []

    # Read, change (If-Match) and delete; another workspace sees none of it.
    listed = (await apps.tickets.get("/v1/macros", headers=headers)).json()
    assert [m["name"] for m in listed["items"]] == ["Refund on its way", "Reset"]
    stale = await apps.tickets.patch(f"/v1/macros/{macro['id']}", headers=headers | {"If-Match": '"9"'},
                                     json={"internal": True})
    assert stale.status_code == 412
    changed = await apps.tickets.patch(f"/v1/macros/{macro['id']}", headers=headers | {"If-Match": '"1"'},
                                       json={"internal": True, "body": "{{ticket.id}}"})
    assert (changed.status_code, changed.json()["internal"], changed.json()["version"]) == (200, True, 2)
    other = agent(infra, workspace())
    assert (await apps.tickets.get(f"/v1/macros/{macro['id']}", headers=other)).status_code == 404
    applied_elsewhere = await apps.tickets.post(f"/v1/tickets/{tid}/macros/{macro['id']}", headers=other)
    assert applied_elsewhere.status_code == 404
    assert (await apps.tickets.get("/v1/macros", headers=other)).json()["items"] == []
    deleted = await apps.tickets.delete(f"/v1/macros/{macro['id']}", headers=headers | {"If-Match": '"2"'})
    assert deleted.status_code == 204
    assert (await apps.tickets.get(f"/v1/macros/{macro['id']}", headers=headers)).status_code == 404

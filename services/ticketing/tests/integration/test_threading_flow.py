"""Ticketing threads the interaction stream into tickets: real PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from crm.ticketing.v1 import events_pb2, ticketing_pb2, ticketing_pb2_grpc
from crm_ticketing.main import create_app
from crm_ticketing.settings import Settings
from crmkit.ids import uuid7
from crmkit.kafka import Envelope
from crmkit.settings import InfraSettings
from crmkit.testing import (
    bearer,
    contact_merged_event,
    eventually,
    export_personal_data,
    free_port,
    grpc_auth,
    interaction_event,
    publish,
    running_app,
    service_token_for,
    token_for,
)
from crmkit.topics import TICKETS

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def ticketing(infra: InfraSettings) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra)
    async with running_app(create_app(settings)) as client:
        yield client, settings.grpc_port


async def tickets_of(client: httpx.AsyncClient, infra: InfraSettings, workspace: str, contact: str
                     ) -> list[dict[str, object]]:
    response = await client.get("/v1/tickets", params={"contact_id": contact},
                                headers=bearer(token_for(infra, workspace, roles=("support",))))
    assert response.status_code == 200
    items: list[dict[str, object]] = response.json()["items"]
    return items


async def test_a_reply_continues_its_ticket_and_a_new_thread_opens_another(
    ticketing: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    client, grpc_port = ticketing
    contact = str(uuid7())
    first = interaction_event("ws-t", contact, f"{contact}-1", T0, subject="Broken gear",
                              message_id=f"m1-{contact}@x")
    reply = interaction_event("ws-t", contact, f"{contact}-2", T0 + timedelta(hours=1),
                              subject="Re: Broken gear", message_id=f"m2-{contact}@x",
                              in_reply_to=f"m1-{contact}@x", references=(f"m1-{contact}@x",))
    same_subject = interaction_event("ws-t", contact, f"{contact}-3", T0 + timedelta(hours=2),
                                     subject="Re: Broken gear", message_id=f"m3-{contact}@x")
    await publish(infra, [first, reply, reply, same_subject])

    async def threaded() -> bool:
        items = await tickets_of(client, infra, "ws-t", contact)
        return sum(int(str(t["message_count"])) for t in items) >= 3

    await eventually(threaded, what="three messages threaded")
    items = await tickets_of(client, infra, "ws-t", contact)
    # Newest first: the subject alone never threads, so the third message opened its own ticket.
    assert [(t["subject"], t["message_count"]) for t in items] == [
        ("Re: Broken gear", 1), ("Broken gear", 2)]
    assert all(t["status"] == "new" and t["channel"] == "email" for t in items)
    assert await tickets_of(client, infra, "ws-other", contact) == []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = ticketing_pb2_grpc.TicketingServiceStub(channel)
        ticket = await stub.GetTicket(ticketing_pb2.GetTicketRequest(ticket_id=str(items[1]["id"])),
                                      timeout=5, metadata=grpc_auth(token_for(infra, "ws-t")))
        assert ticket.message_count == 2
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetTicket(ticketing_pb2.GetTicketRequest(ticket_id=str(items[1]["id"])),
                                 timeout=5, metadata=grpc_auth(token_for(infra, "ws-other")))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_opening_a_ticket_publishes_ticket_created(
    ticketing: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    consumer = AIOKafkaConsumer(TICKETS, bootstrap_servers=infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    contact = str(uuid7())
    try:
        await publish(infra, [interaction_event("ws-t", contact, f"{contact}-1", T0, subject="Hi",
                                                message_id=f"{contact}@x")])
        found: list[Envelope] = []
        async with asyncio.timeout(45):
            while not found:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [Envelope.from_record(r.headers, r.value) for r in records
                              if r.key == f"ws-t:{contact}".encode()]
    finally:
        await consumer.stop()
    [envelope] = found
    assert envelope.type == "crm.tickets.ticket.created.v1"
    created = envelope.parse(events_pb2.TicketCreated)
    assert isinstance(created, events_pb2.TicketCreated)
    assert created.interaction_id == f"{contact}-1"
    assert created.ticket.contact_id == contact


async def test_ticket_lists_page_by_cursor_and_refuse_forged_cursors(
    ticketing: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    client, _ = ticketing
    contact = str(uuid7())
    await publish(infra, [interaction_event("ws-page", contact, f"{contact}-{n}", T0 + timedelta(minutes=n),
                                            subject=f"t{n}", message_id=f"{contact}-{n}@x")
                          for n in range(5)])
    headers = bearer(token_for(infra, "ws-page", roles=("support",)))

    async def all_open() -> bool:
        return len(await tickets_of(client, infra, "ws-page", contact)) == 5

    await eventually(all_open, what="five tickets")
    first = (await client.get("/v1/tickets", params={"limit": 2}, headers=headers)).json()
    second = (await client.get("/v1/tickets", params={"limit": 3, "cursor": first["next_cursor"]},
                               headers=headers)).json()
    assert [t["subject"] for t in first["items"] + second["items"]] == ["t4", "t3", "t2", "t1", "t0"]
    assert second["next_cursor"] is None
    forged = await client.get("/v1/tickets", params={"cursor": "garbage"}, headers=headers)
    assert forged.status_code == 422
    assert (await client.get("/v1/tickets", params={"limit": 1000}, headers=headers)).status_code == 422


async def test_a_merge_gives_the_losers_tickets_and_later_messages_to_the_survivor(
    ticketing: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    client, _ = ticketing
    loser, survivor = str(uuid7()), str(uuid7())
    parcel = f"parcel-{loser}@x"
    await publish(infra, [
        interaction_event("ws-tm", loser, f"{loser}-1", T0, subject="Lost parcel", message_id=parcel),
        interaction_event("ws-tm", survivor, f"{survivor}-1", T0, subject="Invoice",
                          message_id=f"invoice-{survivor}@x"),
        interaction_event("ws-tm-other", loser, f"{loser}-1", T0, subject="Elsewhere",
                          message_id=f"elsewhere-{loser}@x"),
    ])

    async def counts(workspace: str) -> tuple[int, int]:
        return (len(await tickets_of(client, infra, workspace, loser)),
                len(await tickets_of(client, infra, workspace, survivor)))

    async def opened() -> bool:
        return await counts("ws-tm") == (1, 1) and await counts("ws-tm-other") == (1, 0)

    await eventually(opened, what="three tickets")
    # The same two contacts merged in another workspace: that workspace's ticket only.
    await publish(infra, [contact_merged_event("ws-tm-other", loser, survivor)])

    async def merged_elsewhere() -> bool:
        return await counts("ws-tm-other") == (0, 1)

    await eventually(merged_elsewhere, what="the other workspace's merge")
    assert await counts("ws-tm") == (1, 1)

    merge = contact_merged_event("ws-tm", loser, survivor)
    await publish(infra, [merge, merge])  # delivered twice

    async def merged() -> bool:
        return await counts("ws-tm") == (0, 2)

    await eventually(merged, what="the loser's ticket under the survivor")
    # In flight during the merge: a reply on the loser's thread, and a new question.
    await publish(infra, [
        interaction_event("ws-tm", loser, f"{loser}-2", T0 + timedelta(hours=1), subject="Re: Lost parcel",
                          message_id=f"parcel-2-{loser}@x", in_reply_to=parcel, references=(parcel,)),
        interaction_event("ws-tm", loser, f"{loser}-3", T0 + timedelta(hours=2), subject="New question",
                          message_id=f"question-{loser}@x"),
    ])

    async def late_threaded() -> bool:
        return len(await tickets_of(client, infra, "ws-tm", survivor)) == 3

    await eventually(late_threaded, what="the loser's late messages under the survivor")
    items = await tickets_of(client, infra, "ws-tm", survivor)
    assert sorted((t["subject"], t["message_count"]) for t in items) == [
        ("Invoice", 1), ("Lost parcel", 2), ("New question", 1)]
    assert await tickets_of(client, infra, "ws-tm", loser) == []
    assert await counts("ws-tm-other") == (0, 1)


async def test_a_persons_data_export_holds_their_tickets_and_messages_and_nothing_else(
    ticketing: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    client, grpc_port = ticketing
    person, merged, stranger = (str(uuid7()) for _ in range(3))
    order = f"order-{person}@x"
    await publish(infra, [
        interaction_event("ws-tx", person, f"{person}-1", T0, subject="Where is my order", message_id=order),
        interaction_event("ws-tx", person, f"{person}-2", T0 + timedelta(hours=1),
                          subject="Re: Where is my order", message_id=f"order-2-{person}@x",
                          in_reply_to=order, references=(order,)),
        interaction_event("ws-tx", merged, f"{merged}-1", T0, subject="From my old address",
                          message_id=f"old-{merged}@x"),
        interaction_event("ws-tx", stranger, f"{stranger}-1", T0, subject="Someone else",
                          message_id=f"else-{stranger}@x"),
        interaction_event("ws-tx-other", person, f"{person}-1", T0, subject="Another workspace",
                          message_id=f"elsewhere-{person}@x"),
    ])

    async def all_threaded() -> bool:
        counts = [sum(int(str(t["message_count"])) for t in await tickets_of(client, infra, ws, contact))
                  for ws, contact in (("ws-tx", person), ("ws-tx", merged), ("ws-tx", stranger),
                                      ("ws-tx-other", person))]
        return counts == [2, 1, 1, 1]

    await eventually(all_threaded, what="every message threaded")
    part = await export_personal_data(grpc_port, service_token_for(infra, "ws-tx"), [person, merged])
    assert (part.service, part.content_type) == ("ticketing", "application/json")
    document = json.loads(part.json)
    assert document["contact_ids"] == [person, merged]
    assert document["truncated"] == []
    assert sorted((t["subject"], t["contact_id"], t["message_count"]) for t in document["tickets"]) == [
        ("From my old address", merged, 1), ("Where is my order", person, 2)]
    assert sorted(m["interaction_id"] for m in document["messages"]) == sorted(
        [f"{person}-1", f"{person}-2", f"{merged}-1"])
    assert {k["key"] for k in document["thread_keys"]} >= {f"msgid:{order}", f"msgid:old-{merged}@x"}
    assert b"Someone else" not in part.json
    assert b"Another workspace" not in part.json
    # The same ids asked in another workspace give that workspace's ticket only.
    elsewhere = json.loads((await export_personal_data(
        grpc_port, service_token_for(infra, "ws-tx-other"), [person, merged])).json)
    assert [t["subject"] for t in elsewhere["tickets"]] == ["Another workspace"]


@pytest.mark.parametrize(("who", "code"), [
    (None, grpc.StatusCode.UNAUTHENTICATED),
    ("support", grpc.StatusCode.PERMISSION_DENIED),
    ("admin", grpc.StatusCode.PERMISSION_DENIED),
])
async def test_only_a_service_may_export_personal_data(
    ticketing: tuple[httpx.AsyncClient, int], infra: InfraSettings, who: str | None, code: grpc.StatusCode
) -> None:
    _, grpc_port = ticketing
    token = token_for(infra, "ws-tx", roles=(who,)) if who else None
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await export_personal_data(grpc_port, token, [str(uuid7())])
    assert error.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await export_personal_data(grpc_port, service_token_for(infra, "ws-tx"), ["not-a-uuid"])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT

"""Ingest in-process (with contacts beside it) against MongoDB, PostgreSQL and the broker."""

from __future__ import annotations

import json

import grpc
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from crm_ingest.domain.interaction import interaction_id
from crmkit.ids import uuid7
from crmkit.kafka import Envelope
from crmkit.testing import bearer, eventually, export_personal_data, service_token_for, token_for
from crmkit.topics import INGEST_RAW, dlq

from .conftest import Platform

pytestmark = pytest.mark.integration


def email(sender: str, message_id: str, subject: str = "Hello") -> bytes:
    return (f"From: Test Person <{sender}>\r\nTo: support@acme.example\r\nSubject: {subject}\r\n"
            f"Message-ID: <{message_id}>\r\n\r\nBody text\r\n").encode()


async def post(platform: Platform, body: bytes, content_type: str = "message/rfc822",
               token: str | None = None) -> httpx.Response:
    headers = {"Content-Type": content_type, **bearer(token or platform.token)}
    return await platform.ingest.post("/v1/channels/email/inbound", content=body, headers=headers)


async def test_an_accepted_email_becomes_an_interaction_on_a_resolved_contact(platform: Platform) -> None:
    message_id = f"{uuid7()}@example.com"
    response = await post(platform, email("Someone@Example.com", message_id))
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    item = await platform.wait_stored(message_id)
    assert item["sender"] == "someone@example.com"
    contact = await platform.contacts.get(f"/v1/contacts/{item['contact_id']}",
                                          headers=bearer(platform.token))
    assert contact.json()["identities"] == [{"kind": "email", "value": "someone@example.com"}]
    other = token_for(platform.infra, "ws-other")
    assert (await platform.ingest.get(f"/v1/interactions/{item['id']}", headers=bearer(other))
            ).status_code == 404


@pytest.mark.parametrize(
    ("body", "content_type", "status", "slug"),
    [
        (b"x" * (64 * 1024 + 1), "message/rfc822", 413, "too-large"),
        (b"   ", "message/rfc822", 422, "empty-message"),
        (b"{}", "application/json", 415, "unsupported-media-type"),
    ],
    ids=["oversized", "empty", "wrong-type"],
)
async def test_bad_requests_are_refused_at_the_endpoint_with_a_problem(
    platform: Platform, body: bytes, content_type: str, status: int, slug: str
) -> None:
    response = await post(platform, body, content_type)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith(slug)


async def test_a_message_larger_than_the_stream_takes_is_a_413_not_a_500(platform: Platform) -> None:
    settings = platform.ingest_app.state.settings
    configured, settings.max_email_bytes = settings.max_email_bytes, 4 * 1024 * 1024
    try:
        body = email("big@example.com", f"{uuid7()}@x") + b"x" * (1536 * 1024)
        response = await post(platform, body)
    finally:
        settings.max_email_bytes = configured
    assert response.status_code == 413
    assert response.json()["detail"] == "the message is larger than the event stream takes"


async def test_only_integrations_with_the_write_scope_may_post(platform: Platform) -> None:
    response = await platform.ingest.post("/v1/channels/email/inbound", content=b"x",
                                          headers={"Content-Type": "message/rfc822"})
    assert response.status_code == 401
    analyst = token_for(platform.infra, "ws-ingest", roles=("analyst",))
    assert (await post(platform, email("a@example.com", "m@x"), token=analyst)).status_code == 403


async def test_a_malformed_email_is_dead_lettered_with_its_reason_and_the_next_one_goes_through(
    platform: Platform,
) -> None:
    dlq_consumer = AIOKafkaConsumer(dlq(INGEST_RAW), bootstrap_servers=platform.infra.kafka_bootstrap_servers,
                                    auto_offset_reset="earliest")
    await dlq_consumer.start()
    try:
        bad = await post(platform, b"Subject: nobody sent this\r\n\r\nbody")
        assert bad.status_code == 202
        message_id = f"{uuid7()}@example.com"
        assert (await post(platform, email("next@example.com", message_id))).status_code == 202
        dead: list[Envelope] = []

        async def dead_lettered() -> bool:
            for records in (await dlq_consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    if Envelope.from_record(record.headers, record.value).id == bad.json()["id"]:
                        dead.append(Envelope.from_record(record.headers, record.value))
                        reason = dict(record.headers)["dlq_reason"].decode()
                        assert reason == "PermanentError: no sender address in From"
            return bool(dead)

        await eventually(dead_lettered, what="the malformed email in the DLQ")
    finally:
        await dlq_consumer.stop()
    await platform.wait_stored(message_id)


async def test_the_same_provider_message_twice_is_stored_once(platform: Platform) -> None:
    consumer = platform.ingest_app.state.runtime.consumers[0]
    handled_before = consumer.processed
    message_id = f"{uuid7()}@example.com"
    replies = [await post(platform, email("twice@example.com", message_id)) for _ in range(2)]
    assert [r.status_code for r in replies] == [202, 202]

    async def both_handled() -> bool:
        return bool(consumer.processed >= handled_before + 2)

    await eventually(both_handled, what="both copies handled")
    interactions = platform.ingest_app.state.service.db.db.interactions
    iid = interaction_id("ws-ingest", "email", message_id)
    assert await interactions.count_documents({"workspace_id": "ws-ingest", "_id": iid}) == 1


async def test_a_persons_data_export_holds_every_field_of_their_interactions_and_nothing_else(
    platform: Platform,
) -> None:
    person, stranger = f"export-{uuid7()}@example.com", f"stranger-{uuid7()}@example.com"
    first, second, theirs, elsewhere = (f"{uuid7()}@example.com" for _ in range(4))
    assert (await post(platform, email(person, first, "My order"))).status_code == 202
    assert (await post(platform, email(person, second, "My order, again"))).status_code == 202
    assert (await post(platform, email(stranger, theirs, "Not mine"))).status_code == 202
    other = token_for(platform.infra, "ws-ingest-other")
    assert (await post(platform, email(person, elsewhere, "Elsewhere"), token=other)).status_code == 202
    contact = (await platform.wait_stored(first))["contact_id"]
    await platform.wait_stored(second)
    await platform.wait_stored(theirs)
    grpc_port = platform.ingest_app.state.settings.grpc_port
    part = await export_personal_data(grpc_port, service_token_for(platform.infra, "ws-ingest"), [contact])
    assert (part.service, part.content_type) == ("ingest", "application/json")
    document = json.loads(part.json)
    assert (document["workspace_id"], document["contact_ids"], document["truncated"]) == (
        "ws-ingest", [contact], [])
    items = document["interactions"]
    assert {i["id"] for i in items} == {interaction_id("ws-ingest", "email", m) for m in (first, second)}
    assert {(i["subject"], i["text"].strip(), i["sender"], i["contact_id"]) for i in items} == {
        ("My order", "Body text", person, contact), ("My order, again", "Body text", person, contact)}
    assert {"recipients", "message_id", "occurred_at", "received_at", "channel", "direction"} <= set(items[0])
    assert b"Not mine" not in part.json
    assert b"Elsewhere" not in part.json
    # The other workspace's answer for the same contact id: nothing.
    theirs_part = await export_personal_data(
        grpc_port, service_token_for(platform.infra, "ws-ingest-other"), [contact])
    assert json.loads(theirs_part.json)["interactions"] == []


async def test_only_a_service_may_export_personal_data(platform: Platform) -> None:
    grpc_port = platform.ingest_app.state.settings.grpc_port
    for token, code in ((None, grpc.StatusCode.UNAUTHENTICATED),
                        (token_for(platform.infra, "ws-ingest", roles=("analyst",)),
                         grpc.StatusCode.PERMISSION_DENIED),
                        (platform.token, grpc.StatusCode.PERMISSION_DENIED)):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await export_personal_data(grpc_port, token, [str(uuid7())])
        assert error.value.code() == code

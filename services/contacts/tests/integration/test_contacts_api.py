"""Contacts in-process against real PostgreSQL and the broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from aiokafka import AIOKafkaConsumer

from crm.common.v1 import common_pb2
from crm.contacts.v1 import contacts_pb2, events_pb2
from crmkit.ids import uuid7
from crmkit.kafka import Envelope
from crmkit.testing import bearer, eventually, grpc_auth, interaction_event, publish, token_for
from crmkit.topics import CONTACTS

from .conftest import Contacts, unique_email

pytestmark = pytest.mark.integration


async def test_an_unknown_identity_becomes_one_contact_under_concurrent_resolvers(contacts: Contacts) -> None:
    email = unique_email()
    spellings = [email, email.upper(), f"  {email} "]
    responses = await asyncio.gather(*[
        contacts.resolve("ws-a", ("IDENTITY_KIND_EMAIL", spellings[i % 3])) for i in range(20)
    ])
    ids = {r.resolutions[0].contact_id for r in responses}
    assert len(ids) == 1
    assert sum(r.resolutions[0].created for r in responses) == 1
    [contact_id] = ids
    body = (await contacts.http.get(f"/v1/contacts/{contact_id}",
                                    headers=bearer(token_for(contacts.infra, "ws-a")))).json()
    assert body["identities"] == [{"kind": "email", "value": email}]


async def test_a_batch_resolves_in_request_order_and_reuses_known_identities(contacts: Contacts) -> None:
    known = unique_email()
    [first] = (await contacts.resolve("ws-a", ("IDENTITY_KIND_EMAIL", known))).resolutions
    response = await contacts.resolve(
        "ws-a", ("IDENTITY_KIND_PHONE", "+44 20 7946 0001"), ("IDENTITY_KIND_EMAIL", known),
        ("IDENTITY_KIND_PHONE", "+442079460001"))
    phone, email, phone_again = response.resolutions
    assert email.contact_id == first.contact_id
    assert not email.created
    assert phone.contact_id == phone_again.contact_id
    assert phone.identity.value == "+442079460001"


async def test_lookups_without_create_do_not_create(contacts: Contacts) -> None:
    [resolution] = (await contacts.resolve("ws-a", ("IDENTITY_KIND_EMAIL", unique_email()),
                                           create=False)).resolutions
    assert resolution.contact_id == ""


async def test_invalid_identities_are_refused_by_grpc(contacts: Contacts) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await contacts.resolve("ws-a", ("IDENTITY_KIND_EMAIL", "not-an-email"))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await contacts.resolve("ws-a", ("IDENTITY_KIND_UNSPECIFIED", "x"))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_calls_without_valid_credentials_are_refused(contacts: Contacts) -> None:
    response = await contacts.http.get(f"/v1/contacts/{uuid7()}")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    forged = await contacts.http.get(f"/v1/contacts/{uuid7()}",
                                     headers={"Authorization": "Bearer forged.token.here"})
    assert forged.status_code == 401
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await contacts.stub.GetContact(contacts_pb2.GetContactRequest(contact_id=str(uuid7())), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_token_without_the_scope_is_forbidden(contacts: Contacts) -> None:
    marketing_only = token_for(contacts.infra, "ws-a", roles=("partner",))
    response = await contacts.http.get(f"/v1/contacts/{uuid7()}", headers=bearer(marketing_only))
    assert response.status_code == 403


async def test_workspace_b_can_never_read_workspace_as_contact(contacts: Contacts) -> None:
    [resolution] = (await contacts.resolve("ws-a", ("IDENTITY_KIND_EMAIL", unique_email()))).resolutions
    other = token_for(contacts.infra, "ws-b")
    for path in (f"/v1/contacts/{resolution.contact_id}", f"/v1/contacts/{resolution.contact_id}/timeline"):
        response = await contacts.http.get(path, headers=bearer(other))
        assert response.status_code == 404, path
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await contacts.stub.GetContact(contacts_pb2.GetContactRequest(contact_id=resolution.contact_id),
                                       timeout=5, metadata=grpc_auth(other))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    # The same identity in workspace B is a different person.
    identity = (resolution.identity.kind, resolution.identity.value)
    [mine] = (await contacts.resolve("ws-b", identity)).resolutions
    assert mine.contact_id != resolution.contact_id


async def test_get_company_answers_in_the_callers_workspace_only(contacts: Contacts) -> None:
    created = await contacts.http.post("/v1/companies", json={"name": "Acme GmbH"},
                                       headers=bearer(token_for(contacts.infra, "ws-a")))
    assert created.status_code == 201, created.text
    company_id = created.json()["id"]
    company = await contacts.stub.GetCompany(contacts_pb2.GetCompanyRequest(company_id=company_id),
                                             timeout=5, metadata=contacts.grpc_metadata("ws-a"))
    assert (company.id, company.name) == (company_id, "Acme GmbH")
    for workspace, asked in (("ws-b", company_id), ("ws-a", str(uuid7()))):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await contacts.stub.GetCompany(contacts_pb2.GetCompanyRequest(company_id=asked),
                                           timeout=5, metadata=contacts.grpc_metadata(workspace))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_new_contact_is_published_on_the_contacts_topic(contacts: Contacts) -> None:
    consumer = AIOKafkaConsumer(CONTACTS, bootstrap_servers=contacts.infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        [resolution] = (await contacts.resolve("ws-a", ("IDENTITY_KIND_EMAIL", unique_email()))).resolutions
        found = None
        async with asyncio.timeout(30):
            while found is None:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        if record.key == f"ws-a:{resolution.contact_id}".encode():
                            found = record
    finally:
        await consumer.stop()
    envelope = Envelope.from_record(found.headers, found.value)
    assert envelope.type == "crm.contacts.contact.created.v1"
    created = envelope.parse(events_pb2.ContactCreated)
    assert isinstance(created, events_pb2.ContactCreated)
    assert created.contact.id == resolution.contact_id


async def test_interactions_reach_the_timeline_once_newest_first_page_by_page(contacts: Contacts) -> None:
    [resolution] = (await contacts.resolve("ws-a", ("IDENTITY_KIND_EMAIL", unique_email()))).resolutions
    contact_id = resolution.contact_id
    start = datetime(2026, 11, 1, tzinfo=UTC)
    events = [interaction_event("ws-a", contact_id, f"i-{contact_id}-{n}", start + timedelta(hours=n),
                                subject=f"message {n}") for n in range(5)]
    await publish(contacts.infra, [*events, events[2]])  # one event delivered twice
    headers = bearer(token_for(contacts.infra, "ws-a"))

    async def all_there() -> bool:
        page = (await contacts.http.get(f"/v1/contacts/{contact_id}/timeline", headers=headers)).json()
        return len(page["items"]) >= 5

    await eventually(all_there, what="five timeline entries")
    first = (await contacts.http.get(f"/v1/contacts/{contact_id}/timeline?limit=3", headers=headers)).json()
    assert [e["summary"] for e in first["items"]] == ["message 4", "message 3", "message 2"]
    params = {"limit": 3, "cursor": first["next_cursor"]}
    rest = (await contacts.http.get(f"/v1/contacts/{contact_id}/timeline", params=params,
                                    headers=headers)).json()
    assert [e["summary"] for e in rest["items"]] == ["message 1", "message 0"]
    assert rest["next_cursor"] is None
    contact = (await contacts.http.get(f"/v1/contacts/{contact_id}", headers=headers)).json()
    assert contact["last_seen_at"].startswith("2026-11-01T04:00")
    bad = await contacts.http.get(f"/v1/contacts/{contact_id}/timeline?cursor=forged", headers=headers)
    assert bad.status_code == 422


async def test_an_identity_with_a_verified_email_joins_the_owner_of_that_email(contacts: Contacts) -> None:
    email = unique_email()
    [owner] = (await contacts.resolve("ws-a", ("IDENTITY_KIND_EMAIL", email))).resolutions

    async def resolve_visitor(visitor: str, verified: str) -> contacts_pb2.Resolution:
        request = contacts_pb2.ResolveIdentitiesRequest(identities=[contacts_pb2.IdentityToResolve(
            identity=common_pb2.Identity(kind="IDENTITY_KIND_CHAT_VISITOR", value=visitor),
            display_name="Visitor", create_if_missing=True, verified_email=verified)])
        response = await contacts.stub.ResolveIdentities(request, timeout=5,
                                                         metadata=contacts.grpc_metadata("ws-a"))
        return response.resolutions[0]

    linked = await resolve_visitor(f"v-{owner.contact_id}", email.upper())
    assert (linked.contact_id, linked.created) == (owner.contact_id, False)
    new_address = unique_email()
    stranger = await resolve_visitor(f"w-{owner.contact_id}", new_address)
    assert stranger.created
    assert stranger.contact_id != owner.contact_id
    # The address nobody owned is the new contact's now: their email finds them.
    [by_email] = (await contacts.resolve("ws-a", ("IDENTITY_KIND_EMAIL", new_address))).resolutions
    assert (by_email.contact_id, by_email.created) == (stranger.contact_id, False)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await resolve_visitor("v-x", "not-an-email")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_service_updates_tags_and_custom_fields_over_grpc_in_its_workspace_only(
        contacts: Contacts) -> None:
    ws = f"ws-uf-{uuid7().hex[:8]}"
    created = await contacts.http.post("/v1/contacts", headers=bearer(token_for(contacts.infra, ws)),
                                       json={"first_name": "Tag", "emails": [unique_email()],
                                             "tags": ["old", "keep"]})
    assert created.status_code == 201, created.text
    contact_id = created.json()["id"]
    service = grpc_auth(token_for(contacts.infra, ws, roles=("service",)))
    request = contacts_pb2.UpdateContactFieldsRequest(contact_id=contact_id, add_tags=["engaged", "keep"],
                                                      remove_tags=["old"])
    updated = await contacts.stub.UpdateContactFields(request, timeout=5, metadata=service)
    assert sorted(updated.tags) == ["engaged", "keep"]
    body = (await contacts.http.get(f"/v1/contacts/{contact_id}",
                                    headers=bearer(token_for(contacts.infra, ws)))).json()
    assert sorted(body["tags"]) == ["engaged", "keep"]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await contacts.stub.UpdateContactFields(request, timeout=5, metadata=grpc_auth(
            token_for(contacts.infra, f"{ws}-other", roles=("service",))))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as error:  # a user token is no service's
        await contacts.stub.UpdateContactFields(request, timeout=5, metadata=grpc_auth(
            token_for(contacts.infra, ws, roles=("marketing",))))
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    unknown = contacts_pb2.UpdateContactFieldsRequest(contact_id=contact_id)
    unknown.custom_fields.update({"no_such_field": "x"})
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await contacts.stub.UpdateContactFields(unknown, timeout=5, metadata=service)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT

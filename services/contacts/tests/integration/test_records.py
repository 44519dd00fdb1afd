"""The contact and company records over REST: custom fields, identities, optimistic concurrency,
listing, search, audit, and bad input as problem+json. Real PostgreSQL and broker."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Contacts, unique_email, unique_workspace

pytestmark = pytest.mark.integration


async def define(
    contacts: Contacts,
    ws: str,
    key: str,
    type_: str,
    options: list[str] | None = None,
    entity: str = "contact",
) -> None:
    response = await contacts.http.post(
        "/v1/fields",
        headers=contacts.headers(ws),
        json={"entity": entity, "key": key, "label": key.title(), "type": type_, "options": options or []},
    )
    assert response.status_code == 201, response.text


async def create(contacts: Contacts, ws: str, **body: Any) -> dict[str, Any]:
    response = await contacts.http.post("/v1/contacts", headers=contacts.headers(ws), json=body)
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == '"1"'
    result: dict[str, Any] = response.json()
    return result


async def test_a_contact_is_created_with_typed_custom_fields_and_normalised_identities(
    contacts: Contacts,
) -> None:
    ws = unique_workspace()
    for key, type_, options in [
        ("plan", "enum", ["free", "pro"]),
        ("seats", "number", None),
        ("renewal", "date", None),
        ("vip", "boolean", None),
        ("topics", "multi_enum", ["billing", "api"]),
        ("note", "text", None),
    ]:
        await define(contacts, ws, key, type_, options)
    body = await create(
        contacts,
        ws,
        first_name="Ada",
        last_name="Lovelace",
        emails=["Ada@Example.COM"],
        phones=["+44 20 7946 0958"],
        identities=[{"kind": "telegram", "value": "ada_l"}],
        lifecycle_stage="lead",
        tags=["VIP", "beta"],
        owner_id="u-1",
        addresses=[{"city": "London", "country": "gb"}],
        custom_fields={
            "plan": "pro",
            "seats": 12,
            "renewal": "2027-01-31",
            "vip": True,
            "topics": ["api"],
            "note": "met at a fair",
        },
    )
    assert body["display_name"] == "Ada Lovelace"
    assert body["emails"] == ["ada@example.com"]
    assert body["phones"] == ["+442079460958"]
    assert {"kind": "telegram", "value": "ada_l"} in body["identities"]
    assert body["tags"] == ["beta", "vip"]
    assert body["addresses"] == [{"city": "London", "country": "GB"}]
    assert body["custom_fields"] == {
        "plan": "pro",
        "seats": 12,
        "renewal": "2027-01-31",
        "vip": True,
        "topics": ["api"],
        "note": "met at a fair",
    }
    fetched = await contacts.http.get(f"/v1/contacts/{body['id']}", headers=contacts.headers(ws))
    assert fetched.json() == body
    assert fetched.headers["etag"] == '"1"'


async def test_every_bad_field_is_named_and_nothing_is_written(contacts: Contacts) -> None:
    ws = unique_workspace()
    await define(contacts, ws, "seats", "number")
    email = unique_email()
    response = await contacts.http.post(
        "/v1/contacts",
        headers=contacts.headers(ws),
        json={
            "emails": [email, "not-an-email"],
            "phones": ["12"],
            "lifecycle_stage": "prospect",
            "custom_fields": {"seats": "many", "unknown": 1},
            "addresses": [{"planet": "Mars"}],
        },
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {
        "emails[1]",
        "phones[0]",
        "lifecycle_stage",
        "custom_fields.seats",
        "custom_fields.unknown",
        "addresses[0].planet",
    }
    listed = await contacts.http.get("/v1/contacts", headers=contacts.headers(ws))
    assert listed.json()["items"] == []
    unknown_body = await contacts.http.post("/v1/contacts", headers=contacts.headers(ws), json={"shoe": 42})
    assert unknown_body.status_code == 422


async def test_an_identity_belongs_to_one_contact_and_duplicates_are_detected_on_create(
    contacts: Contacts,
) -> None:
    ws = unique_workspace()
    email = unique_email()
    first = await create(contacts, ws, first_name="Grace", emails=[email])
    again = await contacts.http.post(
        "/v1/contacts", headers=contacts.headers(ws), json={"first_name": "G.", "emails": [email.upper()]}
    )
    assert again.status_code == 409
    assert again.json()["duplicates"] == {f"email:{email}": first["id"]}
    other = await create(contacts, ws, first_name="Other")
    stolen = await contacts.http.patch(
        f"/v1/contacts/{other['id']}",
        headers={**contacts.headers(ws), "If-Match": '"1"'},
        json={"emails": [email]},
    )
    assert stolen.status_code == 409


async def test_writes_need_the_current_version(contacts: Contacts) -> None:
    ws = unique_workspace()
    contact = await create(contacts, ws, first_name="Alan", last_name="Turing")
    url = f"/v1/contacts/{contact['id']}"
    missing = await contacts.http.patch(url, headers=contacts.headers(ws), json={"first_name": "A."})
    assert missing.status_code == 428
    ok = await contacts.http.patch(
        url,
        headers={**contacts.headers(ws), "If-Match": '"1"'},
        json={"first_name": "Alan M.", "tags": ["math"]},
    )
    assert ok.status_code == 200
    assert ok.headers["etag"] == '"2"'
    assert ok.json()["display_name"] == "Alan M. Turing"
    stale = await contacts.http.patch(
        url, headers={**contacts.headers(ws), "If-Match": '"1"'}, json={"first_name": "Lost update"}
    )
    assert stale.status_code == 412
    assert stale.headers["etag"] == '"2"'
    assert (await contacts.http.get(url, headers=contacts.headers(ws))).json()["first_name"] == "Alan M."


async def test_lists_filter_sort_page_and_search_by_name_email_phone_and_company(contacts: Contacts) -> None:
    ws = unique_workspace()
    headers = contacts.headers(ws)
    acme = (
        await contacts.http.post(
            "/v1/companies", headers=headers, json={"name": "Acme Widgets", "domains": ["acme.example"]}
        )
    ).json()
    people = [
        await create(
            contacts,
            ws,
            first_name="Zoe",
            last_name="Adams",
            emails=["zoe@acme.example"],
            lifecycle_stage="customer",
            tags=["vip"],
            companies=[{"company_id": acme["id"], "role": "CTO"}],
        ),
        await create(
            contacts,
            ws,
            first_name="Yann",
            last_name="Brun",
            phones=["+33 1 23 45 67 89"],
            lifecycle_stage="lead",
        ),
        await create(
            contacts,
            ws,
            first_name="Xia",
            last_name="Chen",
            emails=["xia.chen@mail.example"],
            lifecycle_stage="lead",
            tags=["vip"],
        ),
    ]
    by_name = (await contacts.http.get("/v1/contacts?sort=name&limit=2", headers=headers)).json()
    assert [c["first_name"] for c in by_name["items"]] == ["Xia", "Yann"]
    rest = (
        await contacts.http.get(
            "/v1/contacts",
            headers=headers,
            params={"sort": "name", "limit": 2, "cursor": by_name["next_cursor"]},
        )
    ).json()
    assert [c["first_name"] for c in rest["items"]] == ["Zoe"]
    assert rest["next_cursor"] is None

    async def found(**params: str) -> list[str]:
        page = (await contacts.http.get("/v1/contacts", headers=headers, params=params)).json()
        return sorted(c["first_name"] for c in page["items"])

    assert await found(lifecycle_stage="lead") == ["Xia", "Yann"]
    assert await found(tag="vip", lifecycle_stage="lead") == ["Xia"]
    assert await found(company_id=acme["id"]) == ["Zoe"]
    assert await found(q="chen") == ["Xia"]
    assert await found(q="xia.chen@mail") == ["Xia"]
    assert await found(q="+33 1 23 45 67 89") == ["Yann"]
    assert await found(q="acme") == ["Zoe"]
    assert await found(q="nobody") == []
    # A company's rename reaches its contacts' search.
    renamed = await contacts.http.patch(
        f"/v1/companies/{acme['id']}", headers={**headers, "If-Match": '"1"'}, json={"name": "Globex"}
    )
    assert renamed.status_code == 200
    assert await found(q="globex") == ["Zoe"]
    assert people[0]["companies"][0]["role"] == "CTO"
    bad = await contacts.http.get("/v1/contacts?cursor=forged", headers=headers)
    assert bad.status_code == 422
    foreign = await contacts.http.get(
        "/v1/contacts", headers=headers, params={"sort": "created_at", "cursor": by_name["next_cursor"]}
    )
    assert foreign.status_code == 422


async def test_custom_fields_can_be_removed_and_unknown_companies_are_refused(contacts: Contacts) -> None:
    ws = unique_workspace()
    headers = contacts.headers(ws)
    await define(contacts, ws, "plan", "text")
    contact = await create(contacts, ws, first_name="Kay", custom_fields={"plan": "gold"})
    assert (await contacts.http.delete("/v1/fields/contact/plan", headers=headers)).status_code == 204
    after = (await contacts.http.get(f"/v1/contacts/{contact['id']}", headers=headers)).json()
    assert after["custom_fields"] == {}
    again = await contacts.http.post("/v1/contacts", headers=headers, json={"custom_fields": {"plan": "x"}})
    assert again.status_code == 422
    duplicate_field = await contacts.http.post(
        "/v1/fields", headers=headers, json={"key": "size", "label": "Size", "type": "enum", "options": []}
    )
    assert duplicate_field.status_code == 422
    ghost = await contacts.http.post(
        "/v1/contacts",
        headers=headers,
        json={"companies": [{"company_id": "0190a0c2-0000-7000-8000-000000000000"}]},
    )
    assert ghost.status_code == 422
    assert ghost.json()["errors"][0]["field"] == "companies[0].company_id"


async def test_every_write_is_audited_with_who_before_and_after(contacts: Contacts) -> None:
    ws = unique_workspace()
    contact = await create(contacts, ws, first_name="Ida")
    headers = {**contacts.headers(ws, subject="agent-7"), "If-Match": '"1"'}
    await contacts.http.patch(
        f"/v1/contacts/{contact['id']}", headers=headers, json={"lifecycle_stage": "mql"}
    )
    trail = (
        await contacts.http.get(f"/v1/contacts/{contact['id']}/audit", headers=contacts.headers(ws))
    ).json()
    update, creation = trail["items"]
    assert (update["action"], update["actor"]) == ("update", "agent-7")
    assert (update["before"]["lifecycle_stage"], update["after"]["lifecycle_stage"]) == ("subscriber", "mql")
    assert (creation["action"], creation["actor"], creation["before"]) == ("create", "tester", None)


async def test_companies_have_crud_with_concurrency_and_validated_domains(contacts: Contacts) -> None:
    ws = unique_workspace()
    headers = contacts.headers(ws)
    await define(contacts, ws, "tier", "enum", ["a", "b"], entity="company")
    bad = await contacts.http.post(
        "/v1/companies",
        headers=headers,
        json={"name": "X", "domains": ["not a domain"], "custom_fields": {"tier": "z"}},
    )
    assert {e["field"] for e in bad.json()["errors"]} == {"domains[0]", "custom_fields.tier"}
    made = await contacts.http.post(
        "/v1/companies",
        headers=headers,
        json={
            "name": "Initech",
            "domains": ["WWW.Initech.example"],
            "industry": "software",
            "size": 200,
            "custom_fields": {"tier": "a"},
        },
    )
    company = made.json()
    assert company["domains"] == ["initech.example"]
    listed = (await contacts.http.get("/v1/companies?domain=initech.example", headers=headers)).json()
    assert [c["name"] for c in listed["items"]] == ["Initech"]
    url = f"/v1/companies/{company['id']}"
    assert (await contacts.http.delete(url, headers={**headers, "If-Match": '"9"'})).status_code == 412
    assert (await contacts.http.delete(url, headers={**headers, "If-Match": '"1"'})).status_code == 204
    assert (await contacts.http.get(url, headers=headers)).status_code == 404
    other = unique_workspace()
    assert (
        await contacts.http.get(f"/v1/companies/{company['id']}", headers=contacts.headers(other))
    ).status_code == 404


async def test_contacts_made_by_identity_resolution_are_searchable(contacts: Contacts) -> None:
    ws = unique_workspace()
    email = unique_email()
    [resolution] = (await contacts.resolve(ws, ("IDENTITY_KIND_EMAIL", email))).resolutions
    page = (await contacts.http.get("/v1/contacts", headers=contacts.headers(ws), params={"q": email})).json()
    assert [c["id"] for c in page["items"]] == [resolution.contact_id]


async def test_an_email_is_found_by_itself_whatever_its_words_look_like(contacts: Contacts) -> None:
    ws = unique_workspace()
    created = await create(contacts, ws, emails=["new-1e2f3a@mail.example"])
    for query in ("new-1e2f3a@mail.example", "1e2f3a", "new-1e2"):
        page = (
            await contacts.http.get("/v1/contacts", headers=contacts.headers(ws), params={"q": query})
        ).json()
        assert [c["id"] for c in page["items"]] == [created["id"]], query

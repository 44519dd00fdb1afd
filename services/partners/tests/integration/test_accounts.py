"""Partners, their API keys and subscriptions against the real database: what an admin and a
partner may do, and that nobody reaches another workspace's or another partner's things."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from crm_partners.kafka_users import kafka_users, write_users

from .conftest import Partners

pytestmark = pytest.mark.integration

WON = "crm.pipeline.deal.won.v1"
ERASED = "crm.contacts.contact.erased.v1"
ALL_SCOPES = ["events:read", "subscriptions:write", "deliveries:replay"]
HOOK = "http://127.0.0.1:9/hook"


def workspace() -> str:
    return f"ws-{secrets.token_hex(6)}"


def version(headers: dict[str, str], number: int) -> dict[str, str]:
    return {**headers, "If-Match": f'"{number}"'}


def key_headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def new_partner(partners: Partners, ws: str, name: str = "Acme") -> dict[str, Any]:
    return await created(await partners.client.post("/v1/partners", json={"name": name},
                                                    headers=partners.admin(ws)))


async def new_key(partners: Partners, ws: str, partner_id: str, scopes: list[str] = ALL_SCOPES,
                  **extra: Any) -> dict[str, Any]:
    return await created(await partners.client.post(
        f"/v1/partners/{partner_id}/keys", json={"scopes": scopes, **extra}, headers=partners.admin(ws)))


async def new_subscription(partners: Partners, headers: dict[str, str], partner_id: str,
                           **body: Any) -> dict[str, Any]:
    body = {"name": "won deals", "event_types": [WON], "delivery": "pull", **body}
    return await created(await partners.client.post(f"/v1/partners/{partner_id}/subscriptions", json=body,
                                                     headers=headers))


async def own_subscriptions(partners: Partners, partner_id: str, key: str) -> int:
    response = await partners.client.get(f"/v1/partners/{partner_id}/subscriptions", headers=key_headers(key))
    return response.status_code


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


async def sql(partners: Partners, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(partners.dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


# --- partners ---


async def test_partners_are_listed_by_page_edited_with_if_match_and_deleted(partners: Partners) -> None:
    ws = workspace()
    admin = partners.admin(ws)
    first = await new_partner(partners, ws, "Acme")
    second = await new_partner(partners, ws, "Globex")
    problem(await partners.client.post("/v1/partners", json={"name": "Acme"}, headers=admin), 409)

    page = (await partners.client.get("/v1/partners?limit=1", headers=admin)).json()
    assert [p["id"] for p in page["items"]] == [first["id"]]
    rest = (await partners.client.get("/v1/partners", params={"limit": 1, "cursor": page["next_cursor"]},
                                      headers=admin)).json()
    assert [p["id"] for p in rest["items"]] == [second["id"]]
    assert rest["next_cursor"] is None
    problem(await partners.client.get("/v1/partners?cursor=forged", headers=admin), 422)

    url = f"/v1/partners/{first['id']}"
    read = await partners.client.get(url, headers=admin)
    assert read.headers["etag"] == '"1"'
    problem(await partners.client.patch(url, json={"description": "ERP"}, headers=admin), 428)
    problem(await partners.client.patch(url, json={"description": "ERP"}, headers=version(admin, 7)), 412)
    problem(await partners.client.patch(url, json={"status": "gone"}, headers=version(admin, 1)), 422)
    problem(await partners.client.patch(url, json={"name": "Globex"}, headers=version(admin, 1)), 409)
    changed = await partners.client.patch(url, json={"description": "ERP", "status": "suspended"},
                                          headers=version(admin, 1))
    assert changed.status_code == 200, changed.text
    assert changed.json()["status"] == "suspended"
    assert changed.json()["description"] == "ERP"
    assert changed.headers["etag"] == '"2"'

    assert (await partners.client.delete(url, headers=admin)).status_code == 204
    problem(await partners.client.get(url, headers=admin), 404)
    problem(await partners.client.delete(url, headers=admin), 404)


async def test_bad_partner_input_is_a_422(partners: Partners) -> None:
    admin = partners.admin(workspace())
    problem(await partners.client.post("/v1/partners", json={"name": "  "}, headers=admin), 422)
    problem(await partners.client.post("/v1/partners", json={"name": "x" * 201}, headers=admin), 422)
    problem(await partners.client.post("/v1/partners", json={"name": "A", "owner": "me"}, headers=admin), 422)
    problem(await partners.client.get("/v1/partners/not-a-uuid", headers=admin), 422)


# --- API keys ---


async def test_a_key_is_shown_once_and_authenticates_its_partner(partners: Partners) -> None:
    ws = workspace()
    partner = await new_partner(partners, ws)
    key = await new_key(partners, ws, partner["id"], name="ci")
    assert key["key"].startswith("crmpk_")
    assert key["prefix"] == key["key"][:12]
    assert key["status"] == "active"

    keys_url = f"/v1/partners/{partner['id']}/keys"
    listed = (await partners.client.get(keys_url, headers=partners.admin(ws))).json()
    assert [k["id"] for k in listed["items"]] == [key["id"]]
    assert "key" not in listed["items"][0]
    stored = await sql(partners, "SELECT sha256 FROM partner_api_keys WHERE id = $1::uuid", key["id"])
    assert key["key"] not in json.dumps([dict(r) for r in stored])

    assert await own_subscriptions(partners, partner["id"], key["key"]) == 200
    bearer = await partners.client.get(f"/v1/partners/{partner['id']}/subscriptions",
                                       headers={"Authorization": f"Bearer {key['key']}"})
    assert bearer.status_code == 200
    used = (await partners.client.get(keys_url, headers=partners.admin(ws))).json()
    assert used["items"][0]["last_used_at"] is not None


async def test_bad_revoked_and_expired_keys_and_suspended_partners_are_401(partners: Partners) -> None:
    ws = workspace()
    admin = partners.admin(ws)
    partner = await new_partner(partners, ws)
    url = f"/v1/partners/{partner['id']}/subscriptions"
    for bad in ("crmpk_" + secrets.token_urlsafe(32), "crmpk_", "nonsense"):
        problem(await partners.client.get(url, headers=key_headers(bad)), 401)

    revoked = await new_key(partners, ws, partner["id"])
    assert (await partners.client.delete(f"/v1/partners/{partner['id']}/keys/{revoked['id']}",
                                         headers=admin)).status_code == 204
    problem(await partners.client.get(url, headers=key_headers(revoked["key"])), 401)

    soon = datetime.now(UTC) + timedelta(hours=1)
    expired = await new_key(partners, ws, partner["id"], expires_at=soon.isoformat())
    assert await own_subscriptions(partners, partner["id"], expired["key"]) == 200
    await sql(partners, "UPDATE partner_api_keys SET expires_at = now() - interval '1 second'"
                        " WHERE id = $1::uuid", expired["id"])
    problem(await partners.client.get(url, headers=key_headers(expired["key"])), 401)
    keys = (await partners.client.get(f"/v1/partners/{partner['id']}/keys", headers=admin)).json()["items"]
    assert {k["id"]: k["status"] for k in keys} == {revoked["id"]: "revoked", expired["id"]: "expired"}

    working = await new_key(partners, ws, partner["id"])
    await partners.client.patch(f"/v1/partners/{partner['id']}", json={"status": "suspended"},
                                headers=version(admin, 1))
    problem(await partners.client.get(url, headers=key_headers(working["key"])), 401)
    await partners.client.patch(f"/v1/partners/{partner['id']}", json={"status": "active"},
                                headers=version(admin, 2))
    assert await own_subscriptions(partners, partner["id"], working["key"]) == 200


async def test_key_scopes_are_partner_scopes_and_are_enforced(partners: Partners) -> None:
    ws = workspace()
    partner = await new_partner(partners, ws)
    keys_url = f"/v1/partners/{partner['id']}/keys"
    for scopes in (["partners:admin"], ["*"], []):
        response = await partners.client.post(keys_url, json={"scopes": scopes}, headers=partners.admin(ws))
        body = problem(response, 422)
        assert body["errors"][0]["field"] == "scopes"
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    problem(await partners.client.post(keys_url, json={"scopes": ["events:read"], "expires_at": past},
                                       headers=partners.admin(ws)), 422)
    problem(await partners.client.post(keys_url, json={"scopes": ["events:read"],
                                                       "expires_at": "2099-01-01T00:00:00"},
                                       headers=partners.admin(ws)), 422)

    reader = await new_key(partners, ws, partner["id"], scopes=["events:read"])
    problem(await partners.client.get(f"/v1/partners/{partner['id']}/subscriptions",
                                      headers=key_headers(reader["key"])), 403)
    # A partner's key never manages partners or keys, not even its own.
    writer = await new_key(partners, ws, partner["id"], scopes=["subscriptions:write"])
    for method, path in (("GET", "/v1/partners"), ("GET", f"/v1/partners/{partner['id']}"),
                         ("GET", keys_url), ("GET", f"/v1/partners/{partner['id']}/kafka-user")):
        problem(await partners.client.request(method, path, headers=key_headers(writer["key"])), 403)


async def test_rotation_keeps_the_old_key_for_its_grace_only(partners: Partners) -> None:
    ws = workspace()
    admin = partners.admin(ws)
    partner = await new_partner(partners, ws)
    old = await new_key(partners, ws, partner["id"], name="prod")
    rotated = await partners.client.post(f"/v1/partners/{partner['id']}/keys/{old['id']}/rotate",
                                         json={"grace_seconds": 3600}, headers=admin)
    new = await created(rotated)
    assert new["key"] != old["key"]
    assert (new["name"], new["scopes"]) == ("prod", old["scopes"])
    grace_end = datetime.fromisoformat(new["previous"]["expires_at"])
    assert timedelta(minutes=59) < grace_end - datetime.now(UTC) <= timedelta(hours=1)
    # During the grace both keys work.
    assert await own_subscriptions(partners, partner["id"], old["key"]) == 200
    assert await own_subscriptions(partners, partner["id"], new["key"]) == 200

    # The grace ends: only the new key works.
    await sql(partners, "UPDATE partner_api_keys SET expires_at = now() - interval '1 second'"
                        " WHERE id = $1::uuid", old["id"])
    problem(await partners.client.get(f"/v1/partners/{partner['id']}/subscriptions",
                                      headers=key_headers(old["key"])), 401)
    assert await own_subscriptions(partners, partner["id"], new["key"]) == 200

    # Without grace the old key stops at once; a key that no longer works cannot be rotated.
    newest = await created(await partners.client.post(
        f"/v1/partners/{partner['id']}/keys/{new['id']}/rotate", json={"grace_seconds": 0}, headers=admin))
    problem(await partners.client.get(f"/v1/partners/{partner['id']}/subscriptions",
                                      headers=key_headers(new["key"])), 401)
    assert await own_subscriptions(partners, partner["id"], newest["key"]) == 200
    problem(await partners.client.post(f"/v1/partners/{partner['id']}/keys/{old['id']}/rotate",
                                       headers=admin), 409)
    problem(await partners.client.post(f"/v1/partners/{partner['id']}/keys/{newest['id']}/rotate",
                                       json={"grace_seconds": -1}, headers=admin), 422)


# --- subscriptions ---


async def test_a_webhook_subscription_gets_its_signing_secret_once(partners: Partners) -> None:
    ws = workspace()
    admin = partners.admin(ws)
    partner = await new_partner(partners, ws)
    sub = await new_subscription(partners, admin, partner["id"], event_types=[WON, ERASED, WON],
                                 filters={"pipeline_id": "p1"}, delivery="webhook", url=HOOK)
    assert sub["secret"].startswith("whsec_")
    assert sub["event_types"] == [WON, ERASED]
    assert sub["filters"] == {"pipeline_id": "p1"}
    assert (sub["status"], sub["url"]) == ("enabled", HOOK)
    stored = await sql(partners, "SELECT secret FROM webhook_secrets WHERE subscription_id = $1::uuid",
                       sub["id"])
    assert [r["secret"] for r in stored] == [sub["secret"]]

    read = await partners.client.get(f"/v1/subscriptions/{sub['id']}", headers=admin)
    assert read.status_code == 200
    assert "secret" not in read.json()
    assert read.headers["etag"] == '"1"'
    pulled = await new_subscription(partners, admin, partner["id"])
    assert pulled["secret"] is None
    listed = (await partners.client.get(f"/v1/partners/{partner['id']}/subscriptions?limit=1",
                                        headers=admin)).json()
    assert [s["id"] for s in listed["items"]] == [sub["id"]]
    assert listed["next_cursor"]


@pytest.mark.parametrize(("body", "field"), [
    ({"event_types": ["crm.pipeline.deal.won.v9"]}, "event_types[0]"),
    ({"event_types": [WON, "crm.contacts.contact.secret.v1"]}, "event_types[1]"),
    ({"event_types": []}, "event_types"),
    ({"filters": {"no_such_field": "x"}}, "filters"),
    ({"filters": {"pipeline_id": {"$in": ["a"]}}}, "filters"),
    ({"filters": ["pipeline_id"]}, "body.filters"),
    ({"delivery": "webhook"}, "url"),
    ({"delivery": "kafka", "url": HOOK}, "url"),
    ({"delivery": "webhook", "url": "ftp://example.com/hook"}, "url"),
    ({"delivery": "email"}, "body.delivery"),
])
async def test_bad_subscriptions_are_a_422_naming_the_field(partners: Partners, body: dict[str, Any],
                                                            field: str) -> None:
    ws = workspace()
    partner = await new_partner(partners, ws)
    response = await partners.client.post(
        f"/v1/partners/{partner['id']}/subscriptions",
        json={"name": "s", "event_types": [WON], "delivery": "pull", **body}, headers=partners.admin(ws))
    assert field in [e["field"] for e in problem(response, 422)["errors"]]


async def test_subscriptions_are_edited_with_if_match_and_rechecked(partners: Partners) -> None:
    ws = workspace()
    admin = partners.admin(ws)
    partner = await new_partner(partners, ws)
    sub = await new_subscription(partners, admin, partner["id"], filters={"pipeline_id": "p1"},
                                 delivery="webhook", url=HOOK)
    url = f"/v1/subscriptions/{sub['id']}"
    problem(await partners.client.patch(url, json={"status": "disabled"}, headers=admin), 428)
    # The filter names a field contact.erased does not publish.
    problem(await partners.client.patch(url, json={"event_types": [ERASED]}, headers=version(admin, 1)), 422)
    problem(await partners.client.patch(url, json={"filters": None}, headers=version(admin, 1)), 422)
    disabled = await partners.client.patch(url, json={"status": "disabled", "url": "http://127.0.0.1:10/h"},
                                           headers=version(admin, 1))
    assert disabled.status_code == 200, disabled.text
    assert (disabled.json()["status"], disabled.json()["url"]) == ("disabled", "http://127.0.0.1:10/h")
    assert disabled.json()["disabled_reason"]
    enabled = await partners.client.patch(
        url, json={"status": "enabled", "event_types": [ERASED], "filters": {}}, headers=version(admin, 2))
    assert enabled.status_code == 200, enabled.text
    assert (enabled.json()["status"], enabled.json()["disabled_reason"]) == ("enabled", None)
    assert enabled.json()["event_types"] == [ERASED]
    problem(await partners.client.patch(url, json={"name": "x"}, headers=version(admin, 2)), 412)

    pulled = await new_subscription(partners, admin, partner["id"])
    problem(await partners.client.patch(f"/v1/subscriptions/{pulled['id']}", json={"url": HOOK},
                                        headers=version(admin, 1)), 422)
    assert (await partners.client.delete(url, headers=admin)).status_code == 204
    problem(await partners.client.get(url, headers=admin), 404)


async def test_a_partner_manages_its_own_subscriptions_and_never_sees_another_partners(
        partners: Partners) -> None:
    ws = workspace()
    admin = partners.admin(ws)
    mine, theirs = await new_partner(partners, ws, "Mine"), await new_partner(partners, ws, "Theirs")
    key = key_headers((await new_key(partners, ws, mine["id"]))["key"])
    own = await new_subscription(partners, key, mine["id"])
    assert own["partner_id"] == mine["id"]
    assert (await partners.client.get(f"/v1/subscriptions/{own['id']}", headers=key)).status_code == 200
    changed = await partners.client.patch(f"/v1/subscriptions/{own['id']}", json={"name": "renamed"},
                                          headers={**key, "If-Match": '"1"'})
    assert changed.status_code == 200

    other = await new_subscription(partners, admin, theirs["id"])
    problem(await partners.client.post(f"/v1/partners/{theirs['id']}/subscriptions",
                                       json={"name": "s", "event_types": [WON], "delivery": "pull"},
                                       headers=key), 404)
    problem(await partners.client.get(f"/v1/partners/{theirs['id']}/subscriptions", headers=key), 404)
    problem(await partners.client.get(f"/v1/subscriptions/{other['id']}", headers=key), 404)
    problem(await partners.client.patch(f"/v1/subscriptions/{other['id']}", json={"name": "x"},
                                        headers={**key, "If-Match": '"1"'}), 404)
    problem(await partners.client.delete(f"/v1/subscriptions/{other['id']}", headers=key), 404)
    assert (await partners.client.get(f"/v1/subscriptions/{other['id']}", headers=admin)).status_code == 200
    assert (await partners.client.delete(f"/v1/subscriptions/{own['id']}", headers=key)).status_code == 204


async def test_another_workspaces_ids_answer_404_on_every_route(partners: Partners) -> None:
    ws_a, ws_b = workspace(), workspace()
    partner = await new_partner(partners, ws_b)
    key = await new_key(partners, ws_b, partner["id"])
    sub = await new_subscription(partners, partners.admin(ws_b), partner["id"], delivery="kafka")
    p, k, s = partner["id"], key["id"], sub["id"]
    spec = (await partners.client.get("/openapi.json")).json()
    with_ids = {path for path, ops in spec["paths"].items()
                if "{" in path and any(op.get("tags") == ["partners"] for op in ops.values())}
    checked = set()
    for method, path, body in (
            ("GET", "/v1/partners/{partner_id}", None),
            ("PATCH", "/v1/partners/{partner_id}", {"name": "stolen"}),
            ("DELETE", "/v1/partners/{partner_id}", None),
            ("POST", "/v1/partners/{partner_id}/keys", {"scopes": ["events:read"]}),
            ("GET", "/v1/partners/{partner_id}/keys", None),
            ("POST", "/v1/partners/{partner_id}/keys/{key_id}/rotate", None),
            ("DELETE", "/v1/partners/{partner_id}/keys/{key_id}", None),
            ("POST", "/v1/partners/{partner_id}/subscriptions",
             {"name": "s", "event_types": [WON], "delivery": "pull"}),
            ("GET", "/v1/partners/{partner_id}/subscriptions", None),
            ("GET", "/v1/subscriptions/{subscription_id}", None),
            ("PATCH", "/v1/subscriptions/{subscription_id}", {"name": "stolen"}),
            ("DELETE", "/v1/subscriptions/{subscription_id}", None),
            ("GET", "/v1/partners/{partner_id}/kafka-user", None)):
        url = path.format(partner_id=p, key_id=k, subscription_id=s)
        response = await partners.client.request(method, url, json=body,
                                                 headers={**partners.admin(ws_a), "If-Match": '"1"'})
        problem(response, 404)
        checked.add(path)
    assert with_ids <= checked, with_ids - checked
    # Nothing of B changed, and A's lists do not show it.
    unchanged = await partners.client.get(f"/v1/partners/{p}", headers=partners.admin(ws_b))
    assert unchanged.json()["version"] == 1
    assert await own_subscriptions(partners, p, key["key"]) == 200
    assert (await partners.client.get("/v1/partners", headers=partners.admin(ws_a))).json()["items"] == []


# --- Kafka users ---


async def test_the_kafka_user_follows_the_kafka_subscriptions(partners: Partners, tmp_path: Path) -> None:
    ws = workspace()
    admin = partners.admin(ws)
    partner = await new_partner(partners, ws)
    idle = await new_partner(partners, ws, "Idle")
    await new_subscription(partners, admin, partner["id"], event_types=[WON], delivery="kafka")
    await new_subscription(partners, admin, partner["id"], event_types=["crm.tickets.ticket.created.v1"],
                           delivery="webhook", url=HOOK)
    user = (await partners.client.get(f"/v1/partners/{partner['id']}/kafka-user", headers=admin)).json()
    assert user["kind"] == "KafkaUser"
    assert user["metadata"]["name"] == f"partner-{partner['id']}"
    acls = user["spec"]["authorization"]["acls"]
    assert [(a["resource"]["type"], a["resource"]["name"]) for a in acls] == [
        ("topic", "crm.public.pipeline.v1"), ("group", f"partner.{partner['id']}.")]

    # The folder holds every workspace's users: a partner of this one that is gone is removed.
    gone, elsewhere = tmp_path / "partner-gone.json", tmp_path / "partner-elsewhere.json"
    labels = user["metadata"]["labels"]
    gone.write_text(json.dumps({**user, "metadata": {"name": "partner-gone", "labels": labels}}))
    elsewhere.write_text(json.dumps({"metadata": {"labels": {"crm.example/workspace": "other"}}}))
    written = write_users(ws, await kafka_users(partners.dsn, ws), tmp_path)
    assert sorted(p.name for p in written) == sorted(f"partner-{x['id']}.json" for x in (partner, idle))
    assert json.loads((tmp_path / f"partner-{partner['id']}.json").read_text()) == user
    assert not gone.exists()
    assert elsewhere.exists()

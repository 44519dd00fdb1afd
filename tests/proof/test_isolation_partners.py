"""Partners' own isolation, beyond the HTTP matrix (which proves A's admin gets 404 for every
id of B): a partner's API key is a narrower credential, scoped to one workspace and one
partner. Workspace A has two partners, P1 and P2, each with a webhook subscription that has
delivered one of A's events; with P1's key:

- every operation a partner may call answers 404 problem+json for B's ids and for P2's ids
  (another workspace's, or another partner's, things do not exist for it), while P1's own ids
  answer 2xx (the control); the operations only an admin may call answer 403 whatever the id;
- a replay or a retry asked for on B's or P2's subscription is a 404 and queues nothing, and
  a replay of A's own subscription after one of B's events is a 422 as for an unknown event;
- A's pull feed (as A's admin and as P1, paged, from B's cursor, and as Server-Sent Events)
  never holds one of B's events, while it does hold A's, and no webhook of A's was sent one;
- A's admin naming its own partner with B's key, or with P2's, gets 404;
- the control that makes test_isolation_grpc's "same as unknown" meaningful for partners: B's
  own export of B's person holds B's stored events about them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest

from crm.common.v1 import personal_data_pb2, personal_data_pb2_grpc
from crmkit.testing import eventually

from ..e2e.conftest import WAIT
from ._openapi import Operation
from ._platform import WORKSPACE_A, WORKSPACE_B, Proof
from ._seed import Seeds, opt_in, partner_with_webhook
from .test_isolation_http import EXEMPT, matrix, owner_etag, request_for

pytestmark = pytest.mark.e2e

SERVICE = "partners"


def partner_may_call(op: Operation) -> bool:
    """Whether a partner's key has a scope for ``op``: its subscriptions, their deliveries and
    replays. Partners and their keys are an admin's (a key never manages them)."""
    return (op.path.startswith(("/v1/subscriptions/", "/v1/deliveries/"))
            or op.path == "/v1/partners/{partner_id}/subscriptions")


@dataclass(frozen=True)
class WorkspaceA:
    p1: dict[str, str]  # partner_id, key_id, key, subscription_id, delivery_id
    p2: dict[str, str]
    contact_id: str  # A's contact, whose created event is in A's feed


@pytest.fixture(scope="module")
async def workspace_a(proof: Proof, webhook_url: str, seeds: Seeds) -> WorkspaceA:
    """A opts in and has two partners with a webhook each; a contact created in A gives each
    webhook a delivery."""
    admin = proof.headers(WORKSPACE_A)
    async with httpx.AsyncClient(base_url=proof.platform.url(SERVICE), headers=admin, timeout=30) as http:
        await opt_in(http)
        p1 = await partner_with_webhook(http, f"P1 {WORKSPACE_A}", webhook_url)
        p2 = await partner_with_webhook(http, f"P2 {WORKSPACE_A}", webhook_url)
        async with httpx.AsyncClient(base_url=proof.platform.url("contacts"), headers=admin,
                                     timeout=30) as contacts:
            made = await contacts.post("/v1/contacts", json={"first_name": "Alan"})
        assert made.status_code == 201, made.text

        async def delivered() -> bool:
            for partner in (p1, p2):
                page = await http.get(f"/v1/subscriptions/{partner['subscription_id']}/deliveries")
                items = [d for d in page.json()["items"] if d["status"] == "delivered"]
                if not items:
                    return False
                partner["delivery_id"] = str(items[0]["id"])
            return True

        await eventually(delivered, timeout=WAIT, what="a delivery of A's contact to each of A's partners")
    return WorkspaceA(p1, p2, made.json()["id"])


def _expect(answer: httpx.Response, status: int) -> str | None:
    if answer.status_code != status:
        return f"{answer.status_code} {answer.text[:300]}"
    if not answer.headers.get("content-type", "").startswith("application/problem+json"):
        return f"{status} without problem+json ({answer.headers.get('content-type')})"
    return None


async def test_a_partner_key_gets_404_for_b_and_for_another_partner_of_its_workspace(
    proof: Proof, seeds: Seeds, workspace_a: WorkspaceA,
) -> None:
    key = {"X-API-Key": workspace_a.p1["key"]}
    strangers = {"B": (seeds.ids[SERVICE], proof.headers(WORKSPACE_B)),
                 "A's other partner": (workspace_a.p2, proof.headers(WORKSPACE_A))}
    failures: list[str] = []
    checked = 0
    async with httpx.AsyncClient(base_url=proof.platform.url(SERVICE), timeout=30) as http:
        for op in matrix(proof, SERVICE):
            if op.key in EXEMPT:
                continue
            status = 404 if partner_may_call(op) else 403
            for whose, (ids, owner) in strangers.items():
                request = request_for(proof, op, ids, seeds)
                headers = {**request.pop("headers", {}), **key}
                if op.header("if-match"):
                    headers["If-Match"] = await owner_etag(http, proof, op, ids, owner)
                answer = await http.request(**request, headers=headers)
                checked += 1
                if problem := _expect(answer, status):
                    failures.append(f"{op.method} {op.path} with {whose}'s ids: {problem}")
            if op.method == "GET" and partner_may_call(op):
                own = await http.get(op.fill(workspace_a.p1), headers=key)
                if own.status_code >= 300:
                    failures.append(f"{op.method} {op.path}: P1's own id does not answer P1 "
                                    f"({own.status_code}): its 404s prove nothing")
    print(f"partners: {checked} calls with a partner's key and a stranger's ids")
    assert not failures, "\n".join(failures)


async def _delivery_ids(http: httpx.AsyncClient, subscription_id: str, owner: dict[str, str]) -> list[int]:
    answer = await http.get(f"/v1/subscriptions/{subscription_id}/deliveries", params={"limit": 100},
                            headers=owner)
    assert answer.status_code == 200, answer.text
    return [d["id"] for d in answer.json()["items"]]


async def test_a_replay_or_retry_of_a_strangers_subscription_queues_nothing(
    proof: Proof, seeds: Seeds, workspace_a: WorkspaceA,
) -> None:
    b, p2 = seeds.ids[SERVICE], workspace_a.p2
    targets = {"B": (b, proof.headers(WORKSPACE_B)), "A's other partner": (p2, proof.headers(WORKSPACE_A))}
    callers = {"A's admin": proof.headers(WORKSPACE_A), "P1's key": {"X-API-Key": workspace_a.p1["key"]}}
    window = {"from_time": "2020-01-01T00:00:00Z", "to_time": "2100-01-01T00:00:00Z"}
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=proof.platform.url(SERVICE), timeout=30) as http:
        for whose, (ids, owner) in targets.items():
            before = await _delivery_ids(http, ids["subscription_id"], owner)
            assert before, f"{whose}'s webhook has no delivery: the check would see nothing"
            for who, headers in callers.items():
                if who == "A's admin" and whose != "B":
                    continue  # A's admin may replay any subscription of A
                sub, delivery = ids["subscription_id"], ids["delivery_id"]
                for method, url, body in (("POST", f"/v1/subscriptions/{sub}/replay", window),
                                          ("POST", f"/v1/subscriptions/{sub}/dlq/retry", None),
                                          ("POST", f"/v1/deliveries/{delivery}/retry", None)):
                    answer = await http.request(method, url, json=body, headers=headers)
                    if problem := _expect(answer, 404):
                        failures.append(f"{who}: {method} {url} ({whose}): {problem}")
            after = await _delivery_ids(http, ids["subscription_id"], owner)
            if after != before:
                failures.append(f"{whose}'s deliveries changed: {before} -> {after}")
        # A replay of A's own subscription from one of B's events: B's event is unknown to A,
        # answered exactly as an id that never existed, and nothing is queued.
        of_b = (await http.get("/v1/events", params={"limit": 1}, headers=proof.headers(WORKSPACE_B))).json()
        assert of_b["events"], "B's feed is empty"
        own, admin = workspace_a.p1["subscription_id"], proof.headers(WORKSPACE_A)
        before = await _delivery_ids(http, own, admin)
        answers = [await http.post(f"/v1/subscriptions/{own}/replay", json={"after_event_id": event_id},
                                   headers=admin)
                   for event_id in (of_b["events"][0]["id"], "never-stored-event")]
        b_event, unknown = ((a.status_code, a.json().get("errors")) for a in answers)
        if b_event != unknown or b_event[0] != 422:
            failures.append(f"a replay of A's subscription after B's event: {b_event}, after an unknown "
                            f"event: {unknown}")
        if (after := await _delivery_ids(http, own, admin)) != before:
            failures.append(f"a replay after B's event queued deliveries: {before} -> {after}")
    assert not failures, "\n".join(failures)


async def _feed(http: httpx.AsyncClient, headers: dict[str, str], after: str | None = None
                ) -> tuple[list[dict[str, Any]], str]:
    """Every event of a feed from ``after`` (none: the oldest kept), and the cursor at its end."""
    events: list[dict[str, Any]] = []
    for _ in range(50):
        page = await http.get("/v1/events", params={"limit": 500, **({"after": after} if after else {})},
                              headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        events += body["events"]
        if not body["events"]:
            return events, body["next_cursor"]
        after = body["next_cursor"]
    raise AssertionError("the feed did not end after 50 pages")


async def _streamed(http: httpx.AsyncClient, headers: dict[str, str], seconds: float) -> list[dict[str, Any]]:
    """The events the Server-Sent Events feed sent in ``seconds`` (it never ends by itself)."""
    events: list[dict[str, Any]] = []

    async def read() -> None:
        async with http.stream("GET", "/v1/events/stream", headers=headers) as answer:
            assert answer.status_code == 200, await answer.aread()
            async for line in answer.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line.removeprefix("data: ")))

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), seconds)
    return events


async def test_the_pull_feed_of_a_never_holds_an_event_of_b(
    proof: Proof, seeds: Seeds, workspace_a: WorkspaceA,
) -> None:
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=proof.platform.url(SERVICE), timeout=60) as http:
        of_b, b_cursor = await _feed(http, proof.headers(WORKSPACE_B))
        b_ids = {event["id"] for event in of_b}
        assert b_ids, "B's feed is empty: the check would see nothing"
        readers = {"A's admin": proof.headers(WORKSPACE_A), "P1's key": {"X-API-Key": workspace_a.p1["key"]}}
        for who, headers in readers.items():
            reads = {"paged": (await _feed(http, headers))[0],
                     "from B's cursor": (await _feed(http, headers, b_cursor))[0],
                     "streamed": await _streamed(http, headers, 5)}
            for how, events in reads.items():
                leaked = [e for e in events if e["id"] in b_ids or e.get("workspace") != WORKSPACE_A]
                if leaked:
                    failures.append(f"{who}, {how}: {len(leaked)} events not of A, e.g. {leaked[0]}")
            # The control: A's contact's creation is in A's feed, for A's admin and for P1.
            for how in ("paged", "streamed"):
                if not any(workspace_a.contact_id in json.dumps(e) for e in reads[how]):
                    failures.append(f"{who}, {how}: A's own contact's event is missing")
        # Nor does a webhook of A's carry one: the deliveries of P1's and P2's subscriptions.
        for partner in (workspace_a.p1, workspace_a.p2):
            delivered = await http.get(f"/v1/subscriptions/{partner['subscription_id']}/deliveries",
                                       params={"limit": 100}, headers=proof.headers(WORKSPACE_A))
            if leaked_ids := {d["event_id"] for d in delivered.json()["items"]} & b_ids:
                failures.append(f"A's webhook {partner['subscription_id']} was sent B's events {leaked_ids}")
        forged = await http.get("/v1/events/stream", headers={**proof.headers(WORKSPACE_A),
                                                              "Last-Event-ID": "forged"})
        if problem := _expect(forged, 422):
            failures.append(f"a forged Last-Event-ID: {problem}")
    assert not failures, "\n".join(failures)


async def test_a_key_of_b_or_of_another_partner_named_under_as_own_partner_is_404(
    proof: Proof, seeds: Seeds, workspace_a: WorkspaceA,
) -> None:
    """A path names a partner and one of its keys: A's admin naming its own partner P1 with B's
    key, or with P2's, finds nothing (the key is looked up under the partner, not alone)."""
    admin = proof.headers(WORKSPACE_A)
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=proof.platform.url(SERVICE), timeout=30) as http:
        for op in matrix(proof, SERVICE):
            if set(op.parameters) != {"partner_id", "key_id"}:
                continue
            for whose, key_id in (("B", seeds.ids[SERVICE]["key_id"]), ("P2", workspace_a.p2["key_id"])):
                ids = {"partner_id": workspace_a.p1["partner_id"], "key_id": key_id}
                request = request_for(proof, op, ids, seeds)
                headers = {**request.pop("headers", {}), **admin}
                answer = await http.request(**request, headers=headers)
                if problem := _expect(answer, 404):
                    failures.append(f"{op.method} {op.path}, P1 with {whose}'s key: {problem}")
    assert not failures, "\n".join(failures)


async def test_bs_own_personal_data_export_holds_bs_events_about_the_person(
    proof: Proof, seeds: Seeds,
) -> None:
    """test_isolation_grpc proves A's export of B's person answers as for nobody; this proves
    the same request as B answers with B's events, so that comparison could have failed."""
    request = personal_data_pb2.ExportPersonalDataRequest(contact_ids=[seeds.ids["contacts"]["contact_id"]])
    async with grpc.aio.insecure_channel(proof.platform.grpc(SERVICE)) as channel:
        export = personal_data_pb2_grpc.PersonalDataServiceStub(channel).ExportPersonalData
        own = await export(request, metadata=proof.service_headers(WORKSPACE_B), timeout=15)
        stranger = await export(request, metadata=proof.service_headers(WORKSPACE_A), timeout=15)
    types = {event["type"] for event in json.loads(own.json)["public_events"]}
    assert "crm.contacts.contact.created.v1" in types, own.json[:300]
    assert json.loads(stranger.json)["public_events"] == [], stranger.json[:300]

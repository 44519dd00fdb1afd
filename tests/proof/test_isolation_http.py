"""Tenant isolation over HTTP: every operation of every service whose path names a resource,
called with workspace A's admin token and workspace B's ids, answers 404 problem+json: never
2xx, never 403 (which would tell A that the id exists). The operations come from each running
service's OpenAPI document, so a new endpoint is in the matrix the day it is added; one the
matrix cannot fill fails the test until it gets B's resource (_seed.py) or an exemption here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from ._openapi import Operation, minimal_body, operations, shape
from ._platform import SERVICES, WORKSPACE_A, WORKSPACE_B, Proof
from ._seed import CONTACT_CREATED, Seeds

pytestmark = pytest.mark.e2e

PUBLIC_KB = "public knowledge base: the path names the workspace whose published articles anyone may read"
CSAT = "the customer's survey link: a signed token names the ticket, no workspace token is involved"
TRACKING = "a campaign's tracking or unsubscribe link: a signed token, answered to anyone"
VISITOR = "a website visitor's chat endpoint: the widget's visitor token, not a workspace token, decides"
RECEIVER = "a channel's webhook receiver: the provider's signature decides (test_security.py)"
# Operations the matrix does not call, each with the reason A's token and B's ids do not apply.
EXEMPT: dict[tuple[str, str, str], str] = {
    ("ticketing", "GET", "/v1/public/kb/{workspace}/articles"): PUBLIC_KB,
    ("ticketing", "GET", "/v1/public/kb/{workspace}/articles/{slug}"): PUBLIC_KB,
    ("ticketing", "GET", "/v1/public/csat/{token}"): CSAT,
    ("ticketing", "POST", "/v1/public/csat/{token}"): CSAT,
    ("ticketing", "PUT", "/v1/agents/{agent_id}"): (
        "an upsert of A's own agent record for that user id: it creates A's record and leaves B's "
        "alone (GET and DELETE of B's agent are in the matrix)"),
    ("campaigns", "HEAD", "/v1/t/o/{token}.gif"): TRACKING,
    ("campaigns", "GET", "/v1/t/o/{token}.gif"): TRACKING,
    ("campaigns", "HEAD", "/v1/t/c/{token}"): TRACKING,
    ("campaigns", "GET", "/v1/t/c/{token}"): TRACKING,
    ("campaigns", "GET", "/v1/t/u/{token}"): TRACKING,
    ("campaigns", "POST", "/v1/t/u/{token}"): TRACKING,
    ("pipeline", "PUT", "/v1/exchange-rates/{currency}/{on}"): (
        "names a currency and a day, not anyone's resource: every workspace keeps its own rates"),
    ("pipeline", "GET", "/v1/exchange-rates/{currency}"): "names a currency: A's own rates",
    ("ingest", "POST", "/v1/chat/{widget}/sessions"): VISITOR,
    ("ingest", "POST", "/v1/chat/{widget}/messages"): VISITOR,
    ("ingest", "GET", "/v1/chat/{widget}/messages"): VISITOR,
    ("ingest", "POST", "/v1/chat/{widget}/events"): VISITOR,
    ("ingest", "POST", "/v1/channels/email/sources/{source}/inbound"): RECEIVER,
    ("ingest", "POST", "/v1/channels/telegram/{bot}/webhook"): RECEIVER,
    ("ingest", "POST", "/v1/channels/commerce/{store}/webhook"): RECEIVER,
}
# Lists and pages that are not a workspace's data, so not read as A.
LIST_EXEMPT: dict[tuple[str, str, str], str] = {
    ("ingest", "GET", "/chat/widget.js"): "the chat widget's script, the same for everyone",
    ("ingest", "GET", "/chat/demo"): "the chat widget's demo page",
    ("ingest", "GET", "/v1/channels/whatsapp/webhook"): "Meta's subscription handshake",
    ("ingest", "GET", "/v1/channels/messenger/webhook"): "Meta's subscription handshake",
    ("ingest", "GET", "/v1/channels/instagram/webhook"): "Meta's subscription handshake",
    ("partners", "GET", "/v1/events/stream"): (
        "the pull feed as Server-Sent Events, which never ends: test_isolation_partners.py reads "
        "it as A for a few seconds"),
}
# Request bodies that a generic reading of the schema cannot make valid: without them the call
# would stop at validation (422) and prove nothing about the lookup.
Body = Callable[[Seeds], dict[str, Any]]
BODIES: dict[tuple[str, str, str], Body] = {
    ("contacts", "POST", "/v1/contacts/{survivor_id}/merge"): lambda s: {
        "loser_id": s.ids["contacts"]["loser_id"]},
    ("contacts", "PUT", "/v1/contacts/{contact_id}/consents"): lambda s: {
        "channel": "email", "purpose": "marketing", "status": "granted"},
    ("contacts", "PATCH", "/v1/segments/{segment_id}"): lambda s: s.bodies["segment"],
    ("pipeline", "PUT", "/v1/pipelines/{pipeline_id}/stage-order"): lambda s: {
        "stage_ids": [s.ids["pipeline"]["stage_id"]]},
    ("pipeline", "POST", "/v1/deals/{deal_id}/stage"): lambda s: {"stage_id": s.ids["pipeline"]["stage_id"]},
    ("pipeline", "PUT", "/v1/deals/{deal_id}/forecast-category"): lambda s: {"forecast_category": "commit"},
    ("pipeline", "PUT", "/v1/sales-teams/{team_id}"): lambda s: s.bodies["sales_team"],
    ("ticketing", "POST", "/v1/tickets/{ticket_id}/messages"): lambda s: {"body": "Hello"},
    ("ticketing", "POST", "/v1/tickets/{ticket_id}/links"): lambda s: {
        "ticket_id": s.ids["ticketing"]["other_id"]},
    ("ticketing", "PUT", "/v1/sla/calendars/{calendar_id}"): lambda s: s.bodies["calendar"],
    ("ticketing", "PUT", "/v1/sla/policies/{policy_id}"): lambda s: s.bodies["policy"],
    ("ticketing", "PATCH", "/v1/views/{view_id}"): lambda s: s.bodies["view"],
    ("campaigns", "PUT", "/v1/campaigns/{campaign_id}"): lambda s: s.bodies["campaign"],
    ("campaigns", "PUT", "/v1/journeys/{journey_id}"): lambda s: s.bodies["journey"],
    ("campaigns", "POST", "/v1/templates/{template_id}/preview"): lambda s: {
        "contact_id": s.ids["contacts"]["contact_id"]},
    ("campaigns", "POST", "/v1/campaigns/{campaign_id}/schedule"): lambda s: {
        "schedule_at": "2030-01-01T00:00:00Z"},
    ("ingest", "POST", "/v1/chat/sessions/{session_id}/read"): lambda s: {"seq": 1},
    ("campaigns", "PUT", "/v1/campaigns/{campaign_id}/variants"): lambda s: s.bodies["variants"],
    ("partners", "POST", "/v1/partners/{partner_id}/keys"): lambda s: {"scopes": ["events:read"]},
    ("partners", "POST", "/v1/partners/{partner_id}/subscriptions"): lambda s: {
        "name": "Proof", "event_types": [CONTACT_CREATED], "delivery": "pull"},
    ("partners", "POST", "/v1/subscriptions/{subscription_id}/replay"): lambda s: {
        "from_time": "2020-01-01T00:00:00Z", "to_time": "2100-01-01T00:00:00Z"},
}
# Operations that need another of B's resources than the one their parameter names elsewhere
# in the service: an erasure status exists only for a contact B erased.
OTHER_IDS: dict[tuple[str, str, str], Callable[[Seeds], dict[str, str]]] = {
    ("contacts", "GET", "/v1/contacts/{contact_id}/erasure"): lambda s: {
        "contact_id": s.ids["contacts"]["erased_id"]},
}


def matrix(proof: Proof, service: str) -> list[Operation]:
    return [op for op in operations(service, proof.specs[service]) if op.parameters]


def request_for(proof: Proof, op: Operation, values: dict[str, str], seeds: Seeds) -> dict[str, Any]:
    """The call of ``op`` on the resources ``values`` names, with a body that gets past validation."""
    request: dict[str, Any] = {"method": op.method, "url": op.fill(values)}
    if op.key in BODIES:
        request["json"] = BODIES[op.key](seeds)
    elif (body := minimal_body(proof.specs[op.service], op)) is not None:
        content_type, value = body
        if content_type == "application/json":
            request["json"] = value
        else:
            request["content"], request["headers"] = value, {"Content-Type": content_type}
    return request


async def owner_etag(http: httpx.AsyncClient, proof: Proof, op: Operation, values: dict[str, str],
                     owner: dict[str, str]) -> str:
    """The current ETag of the resource ``op`` changes, as its owner (``owner``: headers) reads
    it: even knowing it, a stranger must get 404."""
    getters = {shape(o.path) for o in operations(op.service, proof.specs[op.service]) if o.method == "GET"}
    segments, filled = op.path.split("/"), op.fill(values).split("/")
    while segments:
        if shape("/".join(segments)) in getters:
            answer = await http.get("/".join(filled[:len(segments)]), headers=owner)
            return answer.headers.get("etag", '"1"')
        segments.pop()
    return '"1"'


@pytest.mark.parametrize("service", SERVICES)
async def test_workspace_a_gets_404_for_every_id_of_workspace_b(
    proof: Proof, seeds: Seeds, service: str,
) -> None:
    service_ids = seeds.ids.get(service, {})
    stranger = proof.headers(WORKSPACE_A)
    failures: list[str] = []
    checked = 0
    async with httpx.AsyncClient(base_url=proof.platform.url(service), timeout=30) as http:
        for op in matrix(proof, service):
            if op.key in EXEMPT:
                continue
            ids = {**service_ids, **(OTHER_IDS[op.key](seeds) if op.key in OTHER_IDS else {})}
            missing = [name for name in op.parameters if name not in ids]
            if missing:
                failures.append(f"{op.method} {op.path}: no id of B for {missing}: add it to _seed.py "
                                f"or exempt the operation with a reason")
                continue
            request = request_for(proof, op, ids, seeds)
            headers = {**request.pop("headers", {}), **stranger}
            if op.header("if-match"):
                headers["If-Match"] = await owner_etag(http, proof, op, ids, proof.headers(WORKSPACE_B))
            answer = await http.request(**request, headers=headers)
            checked += 1
            where = f"{op.method} {op.path}"
            if answer.status_code != 404:
                failures.append(f"{where}: {answer.status_code} {answer.text[:300]}")
            elif not answer.headers.get("content-type", "").startswith("application/problem+json"):
                failures.append(f"{where}: 404 without problem+json ({answer.headers.get('content-type')})")
            if op.method == "GET":
                own = await http.get(op.fill(ids), headers=proof.headers(WORKSPACE_B))
                if own.status_code >= 300:
                    failures.append(f"{where}: B's own id does not answer B ({own.status_code}): the seed "
                                    f"is wrong, so A's 404 proves nothing")
    print(f"{service}: {checked} operations called with B's ids")
    assert not failures, "\n".join(failures)


def test_every_exemption_names_an_operation_that_exists(proof: Proof) -> None:
    """A stale exemption would hide nothing today, but it would quietly cover a new endpoint
    reusing its path tomorrow."""
    known = {op.key for service in SERVICES for op in operations(service, proof.specs[service])}
    assert not (set(EXEMPT) | set(LIST_EXEMPT) | set(BODIES) | set(OTHER_IDS)) - known


def _filters(seeds: Seeds) -> dict[str, str]:
    """B's ids by the query parameter names that filter lists by them."""
    contacts, pipeline, ticketing = seeds.ids["contacts"], seeds.ids["pipeline"], seeds.ids["ticketing"]
    return {"contact_id": contacts["contact_id"], "segment_id": contacts["segment_id"],
            "company_id": contacts["company_id"], "pipeline": pipeline["pipeline_id"],
            "pipeline_id": pipeline["pipeline_id"], "stage": pipeline["stage_id"],
            "deal_id": pipeline["deal_id"], "a": pipeline["snapshot_id"], "b": pipeline["snapshot_id"],
            "team_id": ticketing["team_id"], "category": ticketing["category_id"]}


@pytest.mark.parametrize("service", SERVICES)
async def test_workspace_a_lists_nothing_of_workspace_b_even_filtered_by_its_ids(
    proof: Proof, seeds: Seeds, service: str,
) -> None:
    """Every list and report without path parameters, read with A's token, unfiltered and
    filtered by B's ids where it takes them: no id, email address or phone number of B's
    that the request did not name appears in the answer."""
    filters = _filters(seeds)
    secrets_of_b = {value for ids in seeds.ids.values() for value in ids.values() if len(value) > 20}
    secrets_of_b |= {*seeds.emails, *seeds.phones}
    failures: list[str] = []
    shown_to_b = 0  # the control: B's own reads of the same lists do show B's data
    async with httpx.AsyncClient(base_url=proof.platform.url(service), timeout=30) as http:
        for op in operations(service, proof.specs[service]):
            if op.method != "GET" or op.parameters or op.key in LIST_EXEMPT:
                continue
            names = {p["name"] for p in op.spec.get("parameters", []) if p.get("in") == "query"}
            for query in ({}, {name: filters[name] for name in names & filters.keys()}):
                answer = await http.get(op.path, params=query, headers=proof.headers(WORKSPACE_A))
                leaked = {value for value in secrets_of_b if value in answer.text} - set(query.values())
                if leaked:
                    failures.append(f"GET {op.path} {query}: {answer.status_code} holds {sorted(leaked)}")
                own = await http.get(op.path, params=query, headers=proof.headers(WORKSPACE_B))
                shown_to_b += any(value in own.text for value in secrets_of_b - set(query.values()))
    assert not failures, "\n".join(failures)
    assert shown_to_b, "no list shows B's data even to B: the check would see nothing"

"""Campaigns records interactions as engagement: real MongoDB and broker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import httpx
import pytest

from crm.campaigns.v1 import campaigns_pb2, campaigns_pb2_grpc
from crm_campaigns.main import create_app
from crm_campaigns.settings import Settings
from crmkit.ids import uuid7
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

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def campaigns(infra: InfraSettings) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra)
    async with running_app(create_app(settings)) as client:
        yield client, settings.grpc_port


async def test_each_interaction_counts_once_and_only_in_its_workspace(
    campaigns: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    client, grpc_port = campaigns
    contact = str(uuid7())
    when = [datetime(2026, 11, day, tzinfo=UTC) for day in (1, 3, 2)]
    events = [interaction_event("ws-c", contact, f"i-{contact}-{n}", at) for n, at in enumerate(when)]
    await publish(infra, [*events, events[0]])  # the first event delivered twice
    headers = bearer(token_for(infra, "ws-c", roles=("marketing",)))

    async def counted() -> bool:
        response = await client.get(f"/v1/contacts/{contact}/engagement", headers=headers)
        return response.status_code == 200 and response.json()["interaction_count"] >= 3

    await eventually(counted, what="three engagements")
    body = (await client.get(f"/v1/contacts/{contact}/engagement", headers=headers)).json()
    assert body["interaction_count"] == 3
    assert body["last_interaction_at"].startswith("2026-11-03")
    other = bearer(token_for(infra, "ws-other", roles=("marketing",)))
    assert (await client.get(f"/v1/contacts/{contact}/engagement", headers=other)).status_code == 404
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = campaigns_pb2_grpc.CampaignsServiceStub(channel)
        reply = await stub.GetContactEngagement(campaigns_pb2.GetContactEngagementRequest(contact_id=contact),
                                              timeout=5, metadata=grpc_auth(token_for(infra, "ws-c")))
        assert reply.interaction_count == 3
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetContactEngagement(campaigns_pb2.GetContactEngagementRequest(contact_id=contact),
                                          timeout=5, metadata=grpc_auth(token_for(infra, "ws-other")))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reading_engagement_needs_the_campaigns_scope(
    campaigns: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    client, _ = campaigns
    path = f"/v1/contacts/{uuid7()}/engagement"
    assert (await client.get(path)).status_code == 401
    support = bearer(token_for(infra, "ws-c", roles=("support",)))
    assert (await client.get(path, headers=support)).status_code == 403


async def test_a_merge_folds_the_losers_engagement_and_later_interactions_into_the_survivor(
    campaigns: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    client, _ = campaigns
    loser, survivor, last = str(uuid7()), str(uuid7()), str(uuid7())
    day = {d: datetime(2026, 11, d, tzinfo=UTC) for d in (1, 2, 3, 5, 6)}
    await publish(infra, [
        interaction_event("ws-cm", loser, f"i-{loser}-1", day[1]),
        interaction_event("ws-cm", loser, f"i-{loser}-3", day[3]),
        interaction_event("ws-cm", survivor, f"i-{survivor}-2", day[2]),
        interaction_event("ws-cm-other", loser, f"i-{loser}-1", day[1]),
    ])

    async def engagement(workspace: str, contact: str) -> tuple[int, str] | None:
        headers = bearer(token_for(infra, workspace, roles=("marketing",)))
        response = await client.get(f"/v1/contacts/{contact}/engagement", headers=headers)
        if response.status_code == 404:
            return None
        body = response.json()
        return body["interaction_count"], body["last_interaction_at"][:10]

    async def both(workspace: str) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
        return await engagement(workspace, loser), await engagement(workspace, survivor)

    async def counted() -> bool:
        return (await both("ws-cm") == ((2, "2026-11-03"), (1, "2026-11-02"))
                and await both("ws-cm-other") == ((1, "2026-11-01"), None))

    await eventually(counted, what="the engagement before the merge")
    # The same two contacts merged in another workspace: that workspace's engagement only.
    await publish(infra, [contact_merged_event("ws-cm-other", loser, survivor)])

    async def merged_elsewhere() -> bool:
        return await both("ws-cm-other") == (None, (1, "2026-11-01"))

    await eventually(merged_elsewhere, what="the other workspace's merge")
    assert await both("ws-cm") == ((2, "2026-11-03"), (1, "2026-11-02"))

    merge = contact_merged_event("ws-cm", loser, survivor)
    await publish(infra, [merge, merge])  # delivered twice

    async def merged() -> bool:
        return await both("ws-cm") == (None, (3, "2026-11-03"))

    await eventually(merged, what="the loser's engagement folded into the survivor's")
    # In flight during the merge: one more interaction of the loser.
    await publish(infra, [interaction_event("ws-cm", loser, f"i-{loser}-5", day[5])])

    async def late_counted() -> bool:
        return await both("ws-cm") == (None, (4, "2026-11-05"))

    await eventually(late_counted, what="the loser's late interaction on the survivor")
    # The survivor merged on: the loser's redirect follows it.
    await publish(infra, [contact_merged_event("ws-cm", survivor, last)])

    async def merged_on() -> bool:
        return await engagement("ws-cm", last) == (4, "2026-11-05")

    await eventually(merged_on, what="the survivor folded into the last contact")
    await publish(infra, [interaction_event("ws-cm", loser, f"i-{loser}-6", day[6])])

    async def chain_followed() -> bool:
        return await engagement("ws-cm", last) == (5, "2026-11-06")

    await eventually(chain_followed, what="the loser's later interaction on the last contact")
    assert await both("ws-cm") == (None, None)
    assert await both("ws-cm-other") == (None, (1, "2026-11-01"))


async def test_a_persons_data_export_holds_their_engagement_and_nothing_else(
    campaigns: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    client, grpc_port = campaigns
    person, merged, stranger = (str(uuid7()) for _ in range(3))
    day = {d: datetime(2026, 10, d, tzinfo=UTC) for d in (1, 2, 3)}
    await publish(infra, [
        interaction_event("ws-cx", person, f"i-{person}-1", day[1]),
        interaction_event("ws-cx", person, f"i-{person}-2", day[2]),
        interaction_event("ws-cx", merged, f"i-{merged}-1", day[3]),
        interaction_event("ws-cx", stranger, f"i-{stranger}-1", day[1]),
        interaction_event("ws-cx-other", person, f"i-{person}-1", day[1]),
    ])

    async def counted() -> bool:
        found = []
        for workspace, contact in (("ws-cx", person), ("ws-cx", merged), ("ws-cx", stranger),
                                   ("ws-cx-other", person)):
            response = await client.get(f"/v1/contacts/{contact}/engagement",
                                        headers=bearer(token_for(infra, workspace, roles=("marketing",))))
            found.append(response.json()["interaction_count"] if response.status_code == 200 else 0)
        return found == [2, 1, 1, 1]

    await eventually(counted, what="every interaction counted")
    part = await export_personal_data(grpc_port, service_token_for(infra, "ws-cx"), [person, merged])
    assert (part.service, part.content_type) == ("campaigns", "application/json")
    document = json.loads(part.json)
    assert (document["workspace_id"], document["contact_ids"], document["truncated"]) == (
        "ws-cx", [person, merged], [])
    assert sorted((e["contact_id"], e["interaction_count"], e["last_interaction_at"][:10])
                  for e in document["engagement"]) == sorted(
        [(person, 2, "2026-10-02"), (merged, 1, "2026-10-03")])
    assert all(e["workspace_id"] == "ws-cx" for e in document["engagement"])
    elsewhere = json.loads((await export_personal_data(
        grpc_port, service_token_for(infra, "ws-cx-other"), [person, merged])).json)
    assert [(e["contact_id"], e["interaction_count"]) for e in elsewhere["engagement"]] == [(person, 1)]


async def test_only_a_service_may_export_personal_data(
    campaigns: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    _, grpc_port = campaigns
    for token, code in ((None, grpc.StatusCode.UNAUTHENTICATED),
                        (token_for(infra, "ws-cx", roles=("marketing",)), grpc.StatusCode.PERMISSION_DENIED),
                        (token_for(infra, "ws-cx"), grpc.StatusCode.PERMISSION_DENIED)):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await export_personal_data(grpc_port, token, [str(uuid7())])
        assert error.value.code() == code

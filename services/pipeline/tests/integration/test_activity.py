"""Pipeline records interactions as activity: real PostgreSQL and broker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import httpx
import pytest

from crm.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc
from crm_pipeline.main import create_app
from crm_pipeline.settings import Settings
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
async def pipeline(infra: InfraSettings) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra)
    async with running_app(create_app(settings)) as client:
        yield client, settings.grpc_port


async def test_each_interaction_counts_once_and_only_in_its_workspace(
    pipeline: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    client, grpc_port = pipeline
    contact = str(uuid7())
    when = [datetime(2026, 11, day, tzinfo=UTC) for day in (1, 3, 2)]
    events = [interaction_event("ws-p", contact, f"i-{contact}-{n}", at) for n, at in enumerate(when)]
    await publish(infra, [*events, events[0]])  # the first event delivered twice
    headers = bearer(token_for(infra, "ws-p", roles=("sales",)))

    async def counted() -> bool:
        response = await client.get(f"/v1/contacts/{contact}/activity", headers=headers)
        return response.status_code == 200 and response.json()["interaction_count"] >= 3

    await eventually(counted, what="three activities")
    body = (await client.get(f"/v1/contacts/{contact}/activity", headers=headers)).json()
    assert body["interaction_count"] == 3
    assert body["last_activity_at"].startswith("2026-11-03")
    other = bearer(token_for(infra, "ws-other", roles=("sales",)))
    assert (await client.get(f"/v1/contacts/{contact}/activity", headers=other)).status_code == 404
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pipeline_pb2_grpc.PipelineServiceStub(channel)
        reply = await stub.GetContactActivity(pipeline_pb2.GetContactActivityRequest(contact_id=contact),
                                              timeout=5, metadata=grpc_auth(token_for(infra, "ws-p")))
        assert reply.interaction_count == 3
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetContactActivity(pipeline_pb2.GetContactActivityRequest(contact_id=contact),
                                          timeout=5, metadata=grpc_auth(token_for(infra, "ws-other")))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reading_activity_needs_the_pipeline_scope(
    pipeline: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    client, _ = pipeline
    path = f"/v1/contacts/{uuid7()}/activity"
    assert (await client.get(path)).status_code == 401
    marketing = bearer(token_for(infra, "ws-p", roles=("marketing",)))
    assert (await client.get(path, headers=marketing)).status_code == 403


async def test_a_merge_folds_the_losers_activity_and_later_interactions_into_the_survivor(
    pipeline: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    client, _ = pipeline
    loser, survivor = str(uuid7()), str(uuid7())
    day = {d: datetime(2026, 11, d, tzinfo=UTC) for d in (1, 2, 3, 5)}
    await publish(infra, [
        interaction_event("ws-pm", loser, f"i-{loser}-1", day[1]),
        interaction_event("ws-pm", loser, f"i-{loser}-3", day[3]),
        interaction_event("ws-pm", survivor, f"i-{survivor}-2", day[2]),
        interaction_event("ws-pm-other", loser, f"i-{loser}-1", day[1]),
    ])

    async def activity(workspace: str, contact: str) -> tuple[int, str] | None:
        headers = bearer(token_for(infra, workspace, roles=("sales",)))
        response = await client.get(f"/v1/contacts/{contact}/activity", headers=headers)
        if response.status_code == 404:
            return None
        body = response.json()
        return body["interaction_count"], body["last_activity_at"][:10]

    async def both(workspace: str) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
        return await activity(workspace, loser), await activity(workspace, survivor)

    async def counted() -> bool:
        return (await both("ws-pm") == ((2, "2026-11-03"), (1, "2026-11-02"))
                and await both("ws-pm-other") == ((1, "2026-11-01"), None))

    await eventually(counted, what="the activity before the merge")
    # The same two contacts merged in another workspace: that workspace's activity only.
    await publish(infra, [contact_merged_event("ws-pm-other", loser, survivor)])

    async def merged_elsewhere() -> bool:
        return await both("ws-pm-other") == (None, (1, "2026-11-01"))

    await eventually(merged_elsewhere, what="the other workspace's merge")
    assert await both("ws-pm") == ((2, "2026-11-03"), (1, "2026-11-02"))

    merge = contact_merged_event("ws-pm", loser, survivor)
    await publish(infra, [merge, merge])  # delivered twice

    async def merged() -> bool:
        return await both("ws-pm") == (None, (3, "2026-11-03"))

    await eventually(merged, what="the loser's activity folded into the survivor's")
    # In flight during the merge: one more interaction of the loser.
    await publish(infra, [interaction_event("ws-pm", loser, f"i-{loser}-5", day[5])])

    async def late_counted() -> bool:
        return await both("ws-pm") == (None, (4, "2026-11-05"))

    await eventually(late_counted, what="the loser's late interaction on the survivor")
    assert await both("ws-pm-other") == (None, (1, "2026-11-01"))


async def test_a_persons_data_export_holds_their_activity_and_nothing_else(
    pipeline: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    client, grpc_port = pipeline
    person, merged, stranger = (str(uuid7()) for _ in range(3))
    day = {d: datetime(2026, 10, d, tzinfo=UTC) for d in (1, 2, 3)}
    await publish(infra, [
        interaction_event("ws-px", person, f"i-{person}-1", day[1]),
        interaction_event("ws-px", person, f"i-{person}-2", day[2]),
        interaction_event("ws-px", merged, f"i-{merged}-1", day[3]),
        interaction_event("ws-px", stranger, f"i-{stranger}-1", day[1]),
        interaction_event("ws-px-other", person, f"i-{person}-1", day[1]),
    ])

    async def counted() -> bool:
        found = []
        for workspace, contact in (("ws-px", person), ("ws-px", merged), ("ws-px", stranger),
                                   ("ws-px-other", person)):
            response = await client.get(f"/v1/contacts/{contact}/activity",
                                        headers=bearer(token_for(infra, workspace, roles=("sales",))))
            found.append(response.json()["interaction_count"] if response.status_code == 200 else 0)
        return found == [2, 1, 1, 1]

    await eventually(counted, what="every interaction counted")
    part = await export_personal_data(grpc_port, service_token_for(infra, "ws-px"), [person, merged])
    assert (part.service, part.content_type) == ("pipeline", "application/json")
    document = json.loads(part.json)
    assert (document["workspace_id"], document["contact_ids"], document["truncated"]) == (
        "ws-px", [person, merged], [])
    assert sorted((a["contact_id"], a["interaction_count"], a["last_activity_at"][:10])
                  for a in document["activity"]) == sorted(
        [(person, 2, "2026-10-02"), (merged, 1, "2026-10-03")])
    assert all(a["workspace_id"] == "ws-px" for a in document["activity"])
    elsewhere = json.loads((await export_personal_data(
        grpc_port, service_token_for(infra, "ws-px-other"), [person, merged])).json)
    assert [(a["contact_id"], a["interaction_count"]) for a in elsewhere["activity"]] == [(person, 1)]


async def test_only_a_service_may_export_personal_data(
    pipeline: tuple[httpx.AsyncClient, int], infra: InfraSettings
) -> None:
    _, grpc_port = pipeline
    for token, code in ((None, grpc.StatusCode.UNAUTHENTICATED),
                        (token_for(infra, "ws-px", roles=("sales",)), grpc.StatusCode.PERMISSION_DENIED),
                        (token_for(infra, "ws-px"), grpc.StatusCode.PERMISSION_DENIED)):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await export_personal_data(grpc_port, token, [str(uuid7())])
        assert error.value.code() == code

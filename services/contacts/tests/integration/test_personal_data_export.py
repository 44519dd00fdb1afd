"""A person's data export gathered over gRPC into one archive: contacts against real PostgreSQL
and the broker, its sources in-process servers of our own PersonalDataService contract."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from crm.common.v1 import personal_data_pb2, personal_data_pb2_grpc
from crm_contacts.main import create_app
from crm_contacts.settings import Settings
from crmkit.auth import Authenticator
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, free_port, running_app, token_for

from .conftest import unique_email, unique_workspace

pytestmark = pytest.mark.integration
DEADLINE = 2.0


class Billing(personal_data_pb2_grpc.PersonalDataServiceServicer):  # type: ignore[misc]
    """A service holding personal data: it answers with what it was asked and by whom."""

    def __init__(self, infra: InfraSettings, delay: float = 0.0) -> None:
        self.authenticator = Authenticator(infra)
        self.delay = delay

    async def ExportPersonalData(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        metadata = dict(context.invocation_metadata() or ())
        caller = self.authenticator.from_headers(metadata.get("authorization"), None)
        await asyncio.sleep(self.delay)
        document = {"workspace_id": caller.workspace_id, "caller": caller.subject, "kind": caller.kind,
                    "contact_ids": list(request.contact_ids), "invoices": [{"number": "INV-1"}]}
        return personal_data_pb2.PersonalDataPart(service="billing", json=json.dumps(document).encode(),
                                                  content_type="application/json")


@pytest.fixture(scope="module")
async def exporting(infra: InfraSettings) -> AsyncIterator[tuple[httpx.AsyncClient, InfraSettings]]:
    """Contacts (its own database and consumer group) with three sources: one that answers,
    one slower than the deadline, and one where nothing listens."""
    servers: list[grpc.aio.Server] = []
    targets: dict[str, str] = {}
    for name, delay in (("billing", 0.0), ("slow", 5 * DEADLINE)):
        server = grpc.aio.server()
        personal_data_pb2_grpc.add_PersonalDataServiceServicer_to_server(Billing(infra, delay), server)
        targets[name] = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        await server.start()
        servers.append(server)
    targets["gone"] = f"127.0.0.1:{free_port()}"
    infra = infra.model_copy(update={"database_prefix": f"{infra.database_prefix}cx_",
                                     "consumer_group_prefix": f"{infra.consumer_group_prefix}cx."})
    settings = Settings(http_port=free_port(), grpc_port=free_port(), infra=infra,
                        personal_data_sources=targets, personal_data_deadline_seconds=DEADLINE)
    try:
        async with running_app(create_app(settings)) as http:
            yield http, infra
    finally:
        for server in servers:
            await server.stop(0)


async def test_the_archive_holds_contacts_data_each_answering_service_and_a_manifest_of_the_rest(
    exporting: tuple[httpx.AsyncClient, InfraSettings],
) -> None:
    http, infra = exporting
    ws = unique_workspace()
    headers = bearer(token_for(infra, ws))
    person, twin = [(await http.post("/v1/contacts", headers=headers, json=body)).json() for body in (
        {"first_name": "Erin", "last_name": "Exported", "emails": [unique_email()]},
        {"first_name": "E.", "emails": [unique_email()]},
    )]
    merged = await http.post(f"/v1/contacts/{person['id']}/merge", headers={**headers, "If-Match": '"1"'},
                             json={"loser_id": twin["id"]})
    assert merged.status_code == 200, merged.text

    # Asked by the merged-away id: the person it stands for, with every id of theirs.
    response = await http.get(f"/v1/contacts/{twin['id']}/personal-data", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == f"attachment; filename=personal-data-{twin['id']}.zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == ["billing.json", "contacts.json", "manifest.json"]
        manifest = json.loads(archive.read("manifest.json"))
        own = json.loads(archive.read("contacts.json"))
        billing = json.loads(archive.read("billing.json"))
    assert (manifest["contact_id"], manifest["contact_ids"]) == (person["id"], [person["id"], twin["id"]])
    parts = {p["service"]: (p["file"], p["status"]) for p in manifest["parts"]}
    assert parts.keys() == {"contacts", "billing", "slow", "gone"}
    assert parts["contacts"] == ("contacts.json", "ok")
    assert parts["billing"] == ("billing.json", "ok")
    assert parts["slow"][0] is None
    assert parts["slow"][1].startswith("unavailable: DEADLINE_EXCEEDED")
    assert parts["gone"][0] is None
    assert parts["gone"][1].startswith("unavailable: ")
    assert own["contact"]["last_name"] == "Exported"
    assert [m["loser_id"] for m in own["merges"]] == [twin["id"]]
    # Each source is asked with a service token of the caller's workspace, for every id.
    assert billing == {"workspace_id": ws, "caller": "service:contacts", "kind": "service",
                       "contact_ids": [person["id"], twin["id"]], "invoices": [{"number": "INV-1"}]}

    inline = await http.get(f"/v1/contacts/{person['id']}/personal-data", headers=headers,
                            params={"format": "json"})
    assert inline.headers["content-type"] == "application/json"
    body = inline.json()
    assert body["contact"]["last_name"] == "Exported"
    assert body["services"]["billing"] == {"status": "ok", "data": billing}
    assert body["services"]["gone"]["data"] is None
    assert body["services"]["gone"]["status"].startswith("unavailable: ")


async def test_only_erasers_export_and_an_erased_person_has_nothing_to_export(
    exporting: tuple[httpx.AsyncClient, InfraSettings],
) -> None:
    http, infra = exporting
    ws = unique_workspace()
    headers = bearer(token_for(infra, ws))
    person = (await http.post("/v1/contacts", headers=headers, json={"emails": [unique_email()]})).json()
    url = f"/v1/contacts/{person['id']}/personal-data"
    assert (await http.get(url, headers=bearer(token_for(infra, ws, roles=("sales",))))).status_code == 403
    assert (await http.get(url, headers=bearer(token_for(infra, unique_workspace())))).status_code == 404
    assert (await http.post(f"/v1/contacts/{person['id']}/erasure", headers=headers)).status_code == 202
    gone = await http.get(url, headers=headers)
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"

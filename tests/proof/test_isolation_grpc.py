"""Tenant isolation over gRPC: every rpc of every service's servicers, called with a service
token of workspace A and workspace B's ids, answers NOT_FOUND; batch lookups and read models
keyed by another service's ids answer exactly as they do for ids that never existed. The rpcs
come from the proto descriptors, so a new rpc fails the test until it has a request here."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from crm.campaigns.v1 import campaigns_pb2
from crm.common.v1 import personal_data_pb2
from crm.contacts.v1 import contacts_pb2
from crm.ingest.v1 import ingest_pb2
from crm.pipeline.v1 import pipeline_pb2
from crm.ticketing.v1 import ticketing_pb2
from crmkit.ids import uuid7

from ._platform import SERVICES, WORKSPACE_A, Proof
from ._seed import Seeds

pytestmark = pytest.mark.e2e

_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?")
PERSONAL_DATA = personal_data_pb2.DESCRIPTOR.services_by_name["PersonalDataService"]
# The gRPC services each service's server hosts (as its main.py registers them).
HOSTED: dict[str, tuple[ServiceDescriptor, ...]] = {
    "contacts": (contacts_pb2.DESCRIPTOR.services_by_name["ContactsService"],),
    "pipeline": (pipeline_pb2.DESCRIPTOR.services_by_name["PipelineService"], PERSONAL_DATA),
    "ticketing": (ticketing_pb2.DESCRIPTOR.services_by_name["TicketingService"], PERSONAL_DATA),
    "campaigns": (campaigns_pb2.DESCRIPTOR.services_by_name["CampaignsService"], PERSONAL_DATA),
    "ingest": (ingest_pb2.DESCRIPTOR.services_by_name["IngestService"], PERSONAL_DATA),
    "partners": (PERSONAL_DATA,),
}
Ids = dict[str, str]
# Each rpc's request naming B's data, from B's ids (see ``_ids``).
REQUESTS: dict[str, Callable[[Ids], dict[str, Any]]] = {
    "crm.contacts.v1.ContactsService.ResolveIdentities": lambda ids: {"identities": [{
        "identity": {"kind": "IDENTITY_KIND_EMAIL", "value": ids["email"]}, "create_if_missing": False}]},
    "crm.contacts.v1.ContactsService.GetContact": lambda ids: {"contact_id": ids["contact_id"]},
    "crm.contacts.v1.ContactsService.StreamSegmentMembers": lambda ids: {"segment_ids": [ids["segment_id"]]},
    "crm.contacts.v1.ContactsService.StreamSegmentMemberPages":
        lambda ids: {"segment_ids": [ids["segment_id"]]},
    "crm.contacts.v1.ContactsService.ConfirmErasure": lambda ids: {"contact_id": ids["erased_id"],
                                                                   "service": "ticketing"},
    "crm.contacts.v1.ContactsService.GetCompany": lambda ids: {"company_id": ids["company_id"]},
    "crm.contacts.v1.ContactsService.UpdateContactFields": lambda ids: {"contact_id": ids["contact_id"],
                                                                        "add_tags": ["proof"]},
    "crm.pipeline.v1.PipelineService.GetContactActivity": lambda ids: {"contact_id": ids["contact_id"]},
    "crm.ticketing.v1.TicketingService.GetTicket": lambda ids: {"ticket_id": ids["ticket_id"]},
    "crm.campaigns.v1.CampaignsService.GetContactEngagement": lambda ids: {"contact_id": ids["contact_id"]},
    "crm.ingest.v1.IngestService.GetInteraction": lambda ids: {"interaction_id": ids["interaction_id"]},
    "crm.common.v1.PersonalDataService.ExportPersonalData": lambda ids: {"contact_ids": [ids["contact_id"]]},
}
# Rpcs that answer for any id (a batch resolves what it can; a read model of another service's
# contacts cannot tell B's contact from an unknown one): B's ids must get exactly the answer a
# fresh id gets.
SAME_AS_UNKNOWN = {
    "crm.contacts.v1.ContactsService.ResolveIdentities": "a batch: unresolved identities come back empty",
    "crm.common.v1.PersonalDataService.ExportPersonalData": "a batch over contact ids owned by contacts",
    "crm.pipeline.v1.PipelineService.GetContactActivity": "pipeline's read model of contacts' ids",
    "crm.campaigns.v1.CampaignsService.GetContactEngagement": "campaigns' read model of contacts' ids",
}


def _ids(seeds: Seeds) -> Ids:
    contacts, ticketing, ingest = seeds.ids["contacts"], seeds.ids["ticketing"], seeds.ids["ingest"]
    return {"contact_id": contacts["contact_id"], "company_id": contacts["company_id"],
            "segment_id": contacts["segment_id"], "erased_id": contacts["erased_id"],
            "ticket_id": ticketing["ticket_id"], "interaction_id": ingest["interaction_id"],
            "email": seeds.emails[0]}


def _fresh(ids: Ids) -> Ids:
    return {key: f"nobody-{uuid7().hex[:8]}@example.com" if key == "email" else str(uuid7()) for key in ids}


async def _call(channel: grpc.aio.Channel, method: MethodDescriptor, request: dict[str, Any],
                metadata: tuple[tuple[str, str], ...]) -> tuple[grpc.StatusCode, str]:
    """The status and the text of every message answered."""
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    path = f"/{method.containing_service.full_name}/{method.name}"
    message = json_format.ParseDict(request, request_type())
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path, request_serializer=request_type.SerializeToString,
                                          response_deserializer=response_type.FromString)
            answers = [str(m) async for m in stream(message, metadata=metadata, timeout=15)]
        else:
            unary = channel.unary_unary(path, request_serializer=request_type.SerializeToString,
                                        response_deserializer=response_type.FromString)
            answers = [str(await unary(message, metadata=metadata, timeout=15))]
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, "\n".join(answers)


def _normalised(answer: tuple[grpc.StatusCode, str], ids: Ids) -> tuple[grpc.StatusCode, str]:
    """The answer with the ids it was asked about and the times it was made at blanked."""
    text = _TIME.sub("<time>", answer[1])
    for value in ids.values():
        text = text.replace(value, "<id>")
    return answer[0], text


@pytest.mark.parametrize("service", SERVICES)
async def test_workspace_a_gets_not_found_for_every_id_of_workspace_b_over_grpc(
    proof: Proof, seeds: Seeds, service: str,
) -> None:
    ids, metadata = _ids(seeds), proof.service_headers(WORKSPACE_A)
    failures: list[str] = []
    async with grpc.aio.insecure_channel(proof.platform.grpc(service)) as channel:
        for hosted in HOSTED[service]:
            for method in hosted.methods:
                name = method.full_name
                if name not in REQUESTS:
                    failures.append(f"{name}: no request naming B's data in REQUESTS")
                    continue
                request = REQUESTS[name](ids)
                answer = await _call(channel, method, request, metadata)
                # What the request did not send but the answer holds is B's data leaking.
                leaked = [v for v in ids.values() if v in answer[1] and v not in json.dumps(request)]
                if leaked:
                    failures.append(f"{name}: B's data in the answer: {answer[1][:300]}")
                elif name in SAME_AS_UNKNOWN:
                    fresh = _fresh(ids)
                    control = await _call(channel, method, REQUESTS[name](fresh), metadata)
                    if _normalised(answer, ids) != _normalised(control, fresh):
                        failures.append(f"{name}: B's ids answer {answer}, unknown ids {control}")
                elif answer[0] != grpc.StatusCode.NOT_FOUND:
                    failures.append(f"{name}: {answer[0].name} {answer[1][:300]}")
    assert not failures, "\n".join(failures)

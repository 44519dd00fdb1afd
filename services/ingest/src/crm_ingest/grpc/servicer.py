"""crm.ingest.v1.IngestService."""

from __future__ import annotations

import grpc

from crm.ingest.v1 import ingest_pb2, ingest_pb2_grpc, interaction_pb2
from crm_ingest.service import IngestService
from crm_ingest.wire import interaction_to_proto
from crmkit.grpc import GrpcAuth


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):  # type: ignore[misc]
    def __init__(self, service: IngestService, auth: GrpcAuth) -> None:
        self.service = service
        self.auth = auth

    async def GetInteraction(
        self, request: ingest_pb2.GetInteractionRequest, context: grpc.aio.ServicerContext
    ) -> interaction_pb2.Interaction:
        caller = await self.auth.principal(context, "interactions:read")
        item = await self.service.get_interaction(caller.workspace_id, request.interaction_id)
        if item is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such interaction in this workspace")
        assert item is not None
        return interaction_to_proto(item.interaction)

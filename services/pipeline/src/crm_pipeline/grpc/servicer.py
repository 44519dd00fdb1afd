"""crm.pipeline.v1.PipelineService."""

from __future__ import annotations

import grpc

from crm.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc
from crm_pipeline.service import PipelineService
from crmkit.grpc import GrpcAuth, uuid_or_abort


class PipelineServicer(pipeline_pb2_grpc.PipelineServiceServicer):  # type: ignore[misc]
    def __init__(self, service: PipelineService, auth: GrpcAuth) -> None:
        self.service = service
        self.auth = auth

    async def GetContactActivity(
        self, request: pipeline_pb2.GetContactActivityRequest, context: grpc.aio.ServicerContext
    ) -> pipeline_pb2.ContactActivity:
        caller = await self.auth.principal(context, "pipeline:read")
        contact_id = await uuid_or_abort(context, request.contact_id, "contact_id")
        activity = await self.service.contact_activity(caller.workspace_id, contact_id)
        if activity is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no activity for this contact")
        assert activity is not None
        reply = pipeline_pb2.ContactActivity(contact_id=str(activity.contact_id),
                                             interaction_count=activity.interaction_count)
        reply.last_activity_at.FromDatetime(activity.last_activity_at)
        return reply

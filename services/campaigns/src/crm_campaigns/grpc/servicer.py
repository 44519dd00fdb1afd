"""crm.campaigns.v1.CampaignsService."""

from __future__ import annotations

import grpc

from crm.campaigns.v1 import campaigns_pb2, campaigns_pb2_grpc
from crm_campaigns.service import CampaignsService
from crmkit.grpc import GrpcAuth, uuid_or_abort


class CampaignsServicer(campaigns_pb2_grpc.CampaignsServiceServicer):  # type: ignore[misc]
    def __init__(self, service: CampaignsService, auth: GrpcAuth) -> None:
        self.service = service
        self.auth = auth

    async def GetContactEngagement(
        self, request: campaigns_pb2.GetContactEngagementRequest, context: grpc.aio.ServicerContext
    ) -> campaigns_pb2.ContactEngagement:
        caller = await self.auth.principal(context, "campaigns:read")
        contact_id = str(await uuid_or_abort(context, request.contact_id, "contact_id"))
        found = await self.service.contact_engagement(caller.workspace_id, contact_id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no engagement for this contact")
        assert found is not None
        reply = campaigns_pb2.ContactEngagement(contact_id=found.contact_id,
                                                interaction_count=found.interaction_count)
        reply.last_interaction_at.FromDatetime(found.last_interaction_at)
        return reply

"""crm.ticketing.v1.TicketingService."""

from __future__ import annotations

import grpc

from crm.ticketing.v1 import ticketing_pb2, ticketing_pb2_grpc
from crm_ticketing.service import TicketingService
from crm_ticketing.wire import ticket_to_proto
from crmkit.grpc import GrpcAuth, uuid_or_abort


class TicketingServicer(ticketing_pb2_grpc.TicketingServiceServicer):  # type: ignore[misc]
    def __init__(self, service: TicketingService, auth: GrpcAuth) -> None:
        self.service = service
        self.auth = auth

    async def GetTicket(
        self, request: ticketing_pb2.GetTicketRequest, context: grpc.aio.ServicerContext
    ) -> ticketing_pb2.Ticket:
        caller = await self.auth.principal(context, "tickets:read")
        ticket_id = await uuid_or_abort(context, request.ticket_id, "ticket_id")
        ticket = await self.service.get_ticket(caller.workspace_id, ticket_id)
        if ticket is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such ticket in this workspace")
        assert ticket is not None
        return ticket_to_proto(ticket)

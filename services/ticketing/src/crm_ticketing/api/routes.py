"""Ticketing's REST API under /v1."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from crm_ticketing.domain.model import Ticket
from crm_ticketing.service import MAX_PAGE, InvalidCursor, TicketingService
from crmkit.auth import Principal, require
from crmkit.problems import NotFound, Problem
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["tickets"])

Reader = Annotated[Principal, Depends(require("tickets:read"))]


Service = Annotated[TicketingService, Depends(state("service", TicketingService))]


class TicketOut(BaseModel):
    id: UUID
    contact_id: UUID
    channel: str
    subject: str
    status: str
    message_count: int
    created_at: datetime

    @classmethod
    def of(cls, ticket: Ticket) -> TicketOut:
        return cls(id=ticket.id, contact_id=ticket.contact_id, channel=ticket.channel,
                   subject=ticket.subject, status=ticket.status.value,
                   message_count=ticket.message_count, created_at=ticket.created_at)


class TicketPageOut(BaseModel):
    items: list[TicketOut]
    next_cursor: str | None


@router.get("/tickets", response_model=TicketPageOut)
async def list_tickets(
    caller: Reader,
    service: Service,
    contact_id: UUID | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> TicketPageOut:
    try:
        page = await service.list_tickets(caller.workspace_id, contact_id, cursor, limit)
    except InvalidCursor as exc:
        raise Problem(422, "invalid-cursor", "Invalid cursor", str(exc)) from exc
    return TicketPageOut(items=[TicketOut.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/tickets/{ticket_id}", response_model=TicketOut)
async def get_ticket(ticket_id: UUID, caller: Reader, service: Service) -> TicketOut:
    ticket = await service.get_ticket(caller.workspace_id, ticket_id)
    if ticket is None:
        raise NotFound("ticket")
    return TicketOut.of(ticket)

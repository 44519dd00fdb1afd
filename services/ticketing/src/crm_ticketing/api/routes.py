"""Ticketing's REST API under /v1."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_ticketing.domain.model import Ticket, TicketPriority, TicketStatus, TicketType
from crm_ticketing.domain.views import DEFAULT_SORT, parse_filter
from crm_ticketing.service import MAX_PAGE, InvalidCursor, TicketingService, ViewsService
from crm_ticketing.store.tickets import HistoryEntry
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.problems import NotFound, Problem
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["tickets"])

Reader = Annotated[Principal, Depends(require("tickets:read"))]
Writer = Annotated[Principal, Depends(require("tickets:write"))]
IfMatch = Annotated[str | None, Header(max_length=100)]


Service = Annotated[TicketingService, Depends(state("service", TicketingService))]


class TicketOut(BaseModel):
    id: UUID
    contact_id: UUID
    channel: str
    subject: str
    status: str
    priority: TicketPriority
    type: TicketType | None
    tags: list[str]
    version: int
    message_count: int
    created_at: datetime
    updated_at: datetime | None
    solved_at: datetime | None
    team_id: UUID | None = None
    assignee: str | None = Field(default=None, description="The agent working it (their subject)")
    custom_fields: dict[str, Any] = Field(default_factory=dict,
                                          description="Values of the workspace's ticket fields, by key")

    @classmethod
    def of(cls, ticket: Ticket) -> TicketOut:
        return cls(id=ticket.id, contact_id=ticket.contact_id, channel=ticket.channel,
                   subject=ticket.subject, status=ticket.status.value, priority=ticket.priority,
                   type=ticket.type, tags=list(ticket.tags), version=ticket.version,
                   message_count=ticket.message_count, created_at=ticket.created_at,
                   updated_at=ticket.updated_at, solved_at=ticket.solved_at, team_id=ticket.team_id,
                   assignee=ticket.assignee, custom_fields=dict(ticket.custom_fields))


class TicketPageOut(BaseModel):
    items: list[TicketOut]
    next_cursor: str | None


class TicketUpdate(BaseModel):
    """The fields to change; those not sent stay. Every field is checked by the ticket's rules
    (so that every bad one, unknown ones too, is named in one 422)."""

    model_config = ConfigDict(extra="allow")

    status: Any = Field(default=None, json_schema_extra={"enum": [s.value for s in TicketStatus]},
                        description="Moves only as the transitions allow; 422 invalid-transition else")
    priority: Any = Field(default=None, json_schema_extra={"enum": [p.value for p in TicketPriority]})
    type: Any = Field(default=None, json_schema_extra={"enum": [t.value for t in TicketType]},
                      description="null clears it")
    tags: Any = Field(default=None, json_schema_extra={"type": "array", "items": {"type": "string"}},
                      description="The whole set; lower-cased, at most 50, each without spaces or commas")
    custom_fields: Any = Field(default=None, json_schema_extra={"type": "object"},
                               description="Values by key of the fields defined at /v1/ticket-fields; "
                                           "the keys sent change, null clears one")
    assignee: Any = Field(default=None, json_schema_extra={"type": "string"},
                          description="An active agent's id (422 else); null unassigns")
    team_id: Any = Field(default=None, json_schema_extra={"type": "string", "format": "uuid"},
                         description="A team's id (422 else); null clears it")


class HistoryEntryOut(BaseModel):
    at: datetime
    actor: str
    field: str
    old: Any
    new: Any

    @classmethod
    def of(cls, entry: HistoryEntry) -> HistoryEntryOut:
        return cls(at=entry.at, actor=entry.actor, field=entry.field, old=entry.old, new=entry.new)


class HistoryPageOut(BaseModel):
    items: list[HistoryEntryOut]
    next_cursor: str | None


@router.get("/tickets", response_model=TicketPageOut)
async def list_tickets(
    caller: Reader,
    service: Service,
    views: Annotated[ViewsService, Depends(state("views", ViewsService))],
    contact_id: UUID | None = None,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    status: Annotated[list[str] | None, Query(max_length=20)] = None,
    priority: Annotated[list[str] | None, Query(max_length=20)] = None,
    channel: Annotated[list[str] | None, Query(max_length=20)] = None,
    tag: Annotated[list[str] | None, Query(max_length=64)] = None,
    assignee: Annotated[str | None, Query(max_length=200)] = None,
    team_id: Annotated[str | None, Query(max_length=200)] = None,
) -> TicketPageOut:
    """Newest first. Optional filters, as a saved view's: any of the `status`, `priority` and
    `channel` values given (repeat the parameter), every `tag` given, `assignee` (a subject,
    `me` or `unassigned`) and `team_id` (or `unassigned`); a 422 names each bad one."""
    raw: dict[str, Any] = {name: value for name, value in (
        ("status", status), ("priority", priority), ("channel", channel), ("assignee", assignee),
        ("team_id", team_id)) if value is not None}
    if tag:
        raw["tags"] = {"all": tag}
    if raw:
        if contact_id is not None:
            raw["contact_id"] = str(contact_id)
        found = await views.find_tickets(caller.workspace_id, caller.subject, parse_filter(raw, prefix=""),
                                         DEFAULT_SORT, cursor, limit)
        return TicketPageOut(items=[TicketOut.of(t) for t in found.items], next_cursor=found.next_cursor)
    try:
        page = await service.list_tickets(caller.workspace_id, contact_id, cursor, limit)
    except InvalidCursor as exc:
        raise Problem(422, "invalid-cursor", "Invalid cursor", str(exc)) from exc
    return TicketPageOut(items=[TicketOut.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/tickets/{ticket_id}", response_model=TicketOut)
async def get_ticket(ticket_id: UUID, caller: Reader, service: Service, response: Response) -> TicketOut:
    ticket = await service.get_ticket(caller.workspace_id, ticket_id)
    if ticket is None:
        raise NotFound("ticket")
    response.headers["ETag"] = etag(ticket.version)
    return TicketOut.of(ticket)


@router.patch("/tickets/{ticket_id}", response_model=TicketOut,
              responses={412: {"description": "If-Match is not the current version"},
                         428: {"description": "If-Match is missing"},
                         422: {"description": "Bad or unknown fields, or a status it cannot go to"}})
async def update_ticket(ticket_id: UUID, body: TicketUpdate, caller: Writer, service: Service,
                        response: Response, if_match: IfMatch = None) -> TicketOut:
    """Change status, priority, type and tags at once, or nothing. Each changed field is
    kept in the ticket's history with the caller as the actor."""
    version = expected_version(if_match)
    ticket = await service.update_ticket(caller.workspace_id, caller.subject, ticket_id,
                                         body.model_dump(exclude_unset=True), version)
    response.headers["ETag"] = etag(ticket.version)
    return TicketOut.of(ticket)


@router.get("/tickets/{ticket_id}/history", response_model=HistoryPageOut)
async def ticket_history(
    ticket_id: UUID,
    caller: Reader,
    service: Service,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> HistoryPageOut:
    """Every change to the ticket's fields, newest first: who, when, the value before and after."""
    try:
        page = await service.history(caller.workspace_id, ticket_id, cursor, limit)
    except InvalidCursor as exc:
        raise Problem(422, "invalid-cursor", "Invalid cursor", str(exc)) from exc
    return HistoryPageOut(items=[HistoryEntryOut.of(e) for e in page.items], next_cursor=page.next_cursor)

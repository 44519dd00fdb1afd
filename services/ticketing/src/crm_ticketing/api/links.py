"""Linked tickets, followers and the workspace's ticketing settings, under /v1."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_ticketing.domain.follow_ups import MAX_REOPEN_WINDOW_DAYS, WorkspaceSettings
from crm_ticketing.service.links import TicketRelations
from crm_ticketing.store.links import Link
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["tickets"])

Reader = Annotated[Principal, Depends(require("tickets:read"))]
Writer = Annotated[Principal, Depends(require("tickets:write"))]
Admin = Annotated[Principal, Depends(require("tickets:admin"))]
Relations = Annotated[TicketRelations, Depends(state("relations", TicketRelations))]
AgentId = Annotated[str, Field(min_length=1, max_length=200)]


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ticket_id: UUID


class LinkOut(BaseModel):
    ticket_id: UUID
    kind: str = Field(description="follow_up: opened by a reply to the finished ticket; "
                                  "related: linked by an agent")
    direction: str = Field(description="to: this ticket links to it; from: it links to this ticket")
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, link: Link) -> LinkOut:
        return cls(ticket_id=link.ticket_id, kind=link.kind.value, direction=link.direction,
                   created_by=link.created_by, created_at=link.created_at)


class LinksOut(BaseModel):
    items: list[LinkOut]


class FollowersOut(BaseModel):
    items: list[str]


class SettingsIn(BaseModel):
    """Checked by the settings' rules, so that every bad or unknown field is named in one 422."""

    model_config = ConfigDict(extra="allow")
    reopen_window_days: Any = Field(default=None, json_schema_extra={
        "type": "integer", "minimum": 0, "maximum": MAX_REOPEN_WINDOW_DAYS})


class SettingsOut(BaseModel):
    reopen_window_days: int = Field(
        description="A customer's reply to a ticket solved longer ago, or to a closed one, opens a "
                    "follow-up ticket instead of reopening it")
    version: int

    @classmethod
    def of(cls, settings: WorkspaceSettings) -> SettingsOut:
        return cls(reopen_window_days=settings.reopen_window_days, version=settings.version)


@router.get("/tickets/{ticket_id}/links", response_model=LinksOut)
async def list_links(ticket_id: UUID, caller: Reader, relations: Relations) -> LinksOut:
    links = await relations.links(caller.workspace_id, ticket_id)
    return LinksOut(items=[LinkOut.of(link) for link in links])


@router.post("/tickets/{ticket_id}/links", response_model=LinksOut)
async def add_link(ticket_id: UUID, body: LinkIn, caller: Writer, relations: Relations) -> LinksOut:
    """Link another ticket of the workspace to this one (422 for one outside it); again is a no-op."""
    links = await relations.link(caller.workspace_id, caller.subject, ticket_id, body.ticket_id)
    return LinksOut(items=[LinkOut.of(link) for link in links])


@router.delete("/tickets/{ticket_id}/links/{other_id}", status_code=204)
async def remove_link(ticket_id: UUID, other_id: UUID, caller: Writer, relations: Relations) -> Response:
    """Remove an agent's link; a follow-up link is part of the tickets' history and stays (404)."""
    await relations.unlink(caller.workspace_id, ticket_id, other_id)
    return Response(status_code=204)


@router.get("/tickets/{ticket_id}/followers", response_model=FollowersOut)
async def list_followers(ticket_id: UUID, caller: Reader, relations: Relations) -> FollowersOut:
    return FollowersOut(items=await relations.followers(caller.workspace_id, ticket_id))


@router.put("/tickets/{ticket_id}/followers/{agent}", response_model=FollowersOut)
async def follow(ticket_id: UUID, agent: AgentId, caller: Writer, relations: Relations) -> FollowersOut:
    """Add a follower (``me`` is the caller); adding one twice changes nothing."""
    who = caller.subject if agent == "me" else agent
    return FollowersOut(items=await relations.follow(caller.workspace_id, ticket_id, who))


@router.delete("/tickets/{ticket_id}/followers/{agent}", response_model=FollowersOut)
async def unfollow(ticket_id: UUID, agent: AgentId, caller: Writer, relations: Relations) -> FollowersOut:
    who = caller.subject if agent == "me" else agent
    return FollowersOut(items=await relations.unfollow(caller.workspace_id, ticket_id, who))


@router.get("/settings", response_model=SettingsOut)
async def get_settings(caller: Reader, relations: Relations, response: Response) -> SettingsOut:
    settings = await relations.settings(caller.workspace_id)
    response.headers["ETag"] = etag(settings.version)
    return SettingsOut.of(settings)


@router.put("/settings", response_model=SettingsOut,
            responses={412: {"description": "If-Match is not the current version"},
                       428: {"description": "If-Match is missing"}})
async def put_settings(body: SettingsIn, caller: Admin, relations: Relations, response: Response,
                       if_match: Annotated[str | None, Header(max_length=100)] = None) -> SettingsOut:
    """The workspace's ticketing settings; If-Match ``"0"`` while it has the defaults."""
    settings = await relations.save_settings(caller.workspace_id, body.model_dump(exclude_unset=True),
                                             expected_version(if_match))
    response.headers["ETag"] = etag(settings.version)
    return SettingsOut.of(settings)

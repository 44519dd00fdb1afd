"""Saved views over HTTP: a person's own views and the workspace's shared ones, their tickets
(keyset pages) and their counts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from pydantic import BaseModel

from crm_ticketing.api.routes import TicketOut
from crm_ticketing.service.views import MAX_PAGE, ViewsService
from crm_ticketing.store.views import View
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.web import state

router = APIRouter(prefix="/v1/views", tags=["views"])
Reader = Annotated[Principal, Depends(require("tickets:read"))]
Views = Annotated[ViewsService, Depends(state("views", ViewsService))]
IfMatch = Annotated[str | None, Header(max_length=100)]
_BODY_EXAMPLE = {"view": {"value": {
    "name": "My open urgent email", "shared": False, "sort": "-created_at",
    "filters": {"status": ["new", "open"], "priority": ["urgent", "high"], "channel": ["email"],
                "tags": {"any": ["vip"]}, "assignee": "me",
                "created": {"from": "2026-01-01T00:00:00Z"}}}}}


class ViewOut(BaseModel):
    id: UUID
    name: str
    owner: str
    shared: bool
    filters: dict[str, Any]
    sort: str
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: View) -> ViewOut:
        return cls(id=view.id, name=view.name, owner=view.owner, shared=view.shared,
                   filters=view.filters, sort=view.sort, version=view.version,
                   created_at=view.created_at, updated_at=view.updated_at)


class ViewsOut(BaseModel):
    items: list[ViewOut]


class ViewCountOut(BaseModel):
    id: UUID
    name: str
    count: int
    # True when more than `count` tickets match: counting stops at 10,000.
    capped: bool


class ViewCountsOut(BaseModel):
    items: list[ViewCountOut]


class ViewTicketsOut(BaseModel):
    items: list[TicketOut]
    next_cursor: str | None


@router.post("", response_model=ViewOut, status_code=201)
async def create_view(caller: Reader, views: Views, response: Response,
                      body: Annotated[dict[str, Any], Body(openapi_examples=_BODY_EXAMPLE)]) -> ViewOut:
    """`name`, optional `shared` (false: only you see it), `filters`, `sort` (`-created_at`,
    `created_at`, `-updated_at`, `updated_at`). A 422 names every bad field."""
    view = await views.create(caller.workspace_id, caller.subject, body)
    response.headers["ETag"] = etag(view.version)
    return ViewOut.of(view)


@router.get("", response_model=ViewsOut)
async def list_views(caller: Reader, views: Views) -> ViewsOut:
    """Your views and the shared ones, by name (at most 200)."""
    return ViewsOut(items=[ViewOut.of(v) for v in await views.visible(caller.workspace_id, caller.subject)])


@router.get("/counts", response_model=ViewCountsOut)
async def view_counts(caller: Reader, views: Views) -> ViewCountsOut:
    """Each view you see with the number of tickets it matches now (at most 10,000, then
    `capped`), in one call."""
    counts = await views.counts(caller.workspace_id, caller.subject)
    return ViewCountsOut(items=[ViewCountOut(id=c.view.id, name=c.view.name, count=c.count, capped=c.capped)
                                for c in counts])


@router.get("/{view_id}", response_model=ViewOut)
async def get_view(view_id: UUID, caller: Reader, views: Views, response: Response) -> ViewOut:
    view = await views.get(caller.workspace_id, caller.subject, view_id)
    response.headers["ETag"] = etag(view.version)
    return ViewOut.of(view)


@router.patch("/{view_id}", response_model=ViewOut)
async def update_view(view_id: UUID, caller: Reader, views: Views, response: Response,
                      body: Annotated[dict[str, Any], Body(openapi_examples=_BODY_EXAMPLE)],
                      if_match: IfMatch = None) -> ViewOut:
    """Any of `name`, `shared`, `filters` (the whole filter), `sort`; `If-Match` required. Only
    the owner changes a view (403 for a shared view of someone else)."""
    version = expected_version(if_match)
    view = await views.update(caller.workspace_id, caller.subject, view_id, body, version)
    response.headers["ETag"] = etag(view.version)
    return ViewOut.of(view)


@router.delete("/{view_id}", status_code=204)
async def delete_view(view_id: UUID, caller: Reader, views: Views, if_match: IfMatch = None) -> None:
    await views.delete(caller.workspace_id, caller.subject, view_id, expected_version(if_match))


@router.get("/{view_id}/tickets", response_model=ViewTicketsOut)
async def view_tickets(view_id: UUID, caller: Reader, views: Views,
                       cursor: Annotated[str | None, Query(max_length=300)] = None,
                       limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> ViewTicketsOut:
    """The tickets the view matches, in its order; opaque `next_cursor`."""
    page = await views.view_tickets(caller.workspace_id, caller.subject, view_id, cursor, limit)
    return ViewTicketsOut(items=[TicketOut.of(t) for t in page.items], next_cursor=page.next_cursor)

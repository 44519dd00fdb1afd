"""The pull API under /v1, for partners behind firewalls (events:read): a page of the feed
after a cursor (``wait`` makes it a long poll), and the same feed as Server-Sent Events.

A workspace user reads every public event of the workspace; a partner (its API key) the types
of its enabled subscriptions. ``types`` narrows either. Cursors are opaque; a forged one is a
422. An SSE client resumes with ``Last-Event-ID`` (each event's ``id:`` is its cursor).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from crm_partners.api.auth import caller
from crm_partners.api.caller import Caller
from crm_partners.domain.policy import POLICIES
from crm_partners.service.feed import MAX_LIMIT, MAX_WAIT_SECONDS, Feed, decode, encode
from crm_partners.service.projection import Projection
from crmkit.pagination import InvalidCursor
from crmkit.problems import Problem

router = APIRouter(prefix="/v1", tags=["events"])

Reader = Annotated[Caller, Depends(caller("events:read"))]
HEARTBEAT_SECONDS = 15.0
SSE_PAGE = 100


def feed(request: Request) -> Feed:
    projection = request.app.state.projection
    assert isinstance(projection, Projection)
    return projection.feed


FeedDep = Annotated[Feed, Depends(feed)]
After = Annotated[str | None, Query(max_length=200, description="The next_cursor of the last page; "
                                                                 "none: the oldest event kept")]
Types = Annotated[str | None, Query(max_length=4000, description="Comma-separated event types")]
LastEventId = Annotated[str | None, Header(max_length=200, description="The id of the last event received")]


class EventsPage(BaseModel):
    events: list[dict[str, Any]]
    next_cursor: str


def _types(raw: str | None) -> list[str] | None:
    if raw is None or not raw.strip():
        return None
    types = list(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
    unknown = [t for t in types if t not in POLICIES]
    if unknown:
        message = f"unknown event types: {', '.join(unknown)}"
        raise Problem(422, "validation", "The request is not valid",
                      errors=[{"field": "query.types", "message": message}])
    return types


def _cursor(raw: str | None) -> int:
    try:
        return decode(raw)
    except InvalidCursor as exc:
        raise Problem(422, "invalid-cursor", "Invalid cursor", str(exc)) from exc


@router.get("/events", summary="Public events after a cursor; wait > 0 long-polls for new ones")
async def list_events(who: Reader, events: FeedDep, after: After = None, types: Types = None,
                      limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
                      wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0) -> EventsPage:
    page = await events.page(who.workspace_id, who.partner_id, _cursor(after), _types(types), limit, wait)
    return EventsPage(events=[e.cloudevent() for e in page.events], next_cursor=page.next_cursor)


@router.get("/events/stream", summary="Public events as Server-Sent Events; resume with Last-Event-ID",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "One event per message, "
                                                                                  "its cursor as id"}})
async def stream_events(request: Request, who: Reader, events: FeedDep, after: After = None,
                        types: Types = None, last_event_id: LastEventId = None) -> StreamingResponse:
    start = _cursor(last_event_id or after)
    wanted = _types(types)

    async def messages() -> AsyncIterator[str]:
        cursor = start
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            page = await events.page(who.workspace_id, who.partner_id, cursor, wanted, SSE_PAGE,
                                     HEARTBEAT_SECONDS)
            for event in page.events:
                assert event.seq is not None
                data = json.dumps(event.cloudevent(), ensure_ascii=False)
                yield f"id: {encode(event.seq)}\ndata: {data}\n\n"
            if not page.events:
                yield ": heartbeat\n\n"
            cursor = decode(page.next_cursor)

    return StreamingResponse(messages(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

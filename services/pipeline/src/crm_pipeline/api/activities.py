"""Activities over HTTP: calls, meetings, tasks and notes on deals and contacts, and a deal's
timeline (the stream's emails and chats included)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_pipeline.domain.activities import Activity
from crm_pipeline.service.activities import MAX_PAGE, Activities, ActivityPage
from crm_pipeline.store.activities import ActivityFilter
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["activities"])

Reader = Annotated[Principal, Depends(require("pipeline:read"))]
Writer = Annotated[Principal, Depends(require("pipeline:write"))]
IfMatch = Annotated[str | None, Header(max_length=100)]
Service = Annotated[Activities, Depends(state("activities", Activities))]
Cursor = Annotated[str | None, Query(max_length=400)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


class ActivityIn(BaseModel):
    """Checked by the activity rules, so that every bad field is named in one 422."""

    model_config = ConfigDict(extra="allow")

    kind: Any = Field(default=None, description="Required on create; never changes",
                      json_schema_extra={"type": "string", "enum": ["call", "meeting", "task", "note"]})
    subject: Any = Field(default=None, json_schema_extra={"type": "string"},
                         description="Required for a call, meeting or task")
    body: Any = Field(default=None, json_schema_extra={"type": "string"}, description="Required for a note")
    due_at: Any = Field(default=None, json_schema_extra={"type": "string", "format": "date-time"},
                        description="With its UTC offset; a note has none")
    owner_id: Any = Field(default=None, json_schema_extra={"type": "string"},
                          description="Whose it is; the caller when not sent on create")
    deal_id: Any = Field(default=None, json_schema_extra={"type": "string", "format": "uuid"},
                         description="A deal of the workspace; deal_id or contact_id (or both) required")
    contact_id: Any = Field(default=None, json_schema_extra={"type": "string", "format": "uuid"},
                            description="A contact, checked with contacts (a merged one: its survivor)")
    done: Any = Field(default=None, json_schema_extra={"type": "boolean"},
                      description="Logged as done (create), completed or reopened (update); a note is done")


class ActivityOut(BaseModel):
    id: UUID
    kind: str
    subject: str
    body: str
    due_at: datetime | None
    owner_id: str | None
    deal_id: UUID | None
    contact_id: UUID | None
    done: bool
    completed_at: datetime | None
    completed_by: str | None
    interaction_id: str | None = Field(description="Set when it came from the interaction stream (read-only)")
    direction: str | None = Field(description="inbound or outbound, for the stream's messages")
    version: int
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, activity: Activity) -> ActivityOut:
        return cls(id=activity.id, kind=activity.kind.value, subject=activity.subject, body=activity.body,
                   due_at=activity.due_at, owner_id=activity.owner_id, deal_id=activity.deal_id,
                   contact_id=activity.contact_id, done=activity.done, completed_at=activity.completed_at,
                   completed_by=activity.completed_by, interaction_id=activity.interaction_id,
                   direction=activity.direction, version=activity.version, created_by=activity.created_by,
                   created_at=activity.created_at, updated_at=activity.updated_at)


class ActivityPageOut(BaseModel):
    items: list[ActivityOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: ActivityPage) -> ActivityPageOut:
        return cls(items=[ActivityOut.of(a) for a in page.items], next_cursor=page.next_cursor)


def _with_etag(activity: Activity, response: Response) -> ActivityOut:
    response.headers["ETag"] = etag(activity.version)
    return ActivityOut.of(activity)


@router.post("/activities", response_model=ActivityOut, status_code=201,
             responses={422: {"description": "A bad field, an unknown deal or contact"}})
async def create_activity(body: ActivityIn, caller: Writer, activities: Service, response: Response
                          ) -> ActivityOut:
    """A call, meeting, task or note on a deal and/or a contact. On a deal it counts as the
    deal's latest activity."""
    activity = await activities.create(caller.workspace_id, caller.subject,
                                       body.model_dump(exclude_unset=True))
    return _with_etag(activity, response)


@router.get("/activities", response_model=ActivityPageOut)
async def list_activities(
    caller: Reader,
    activities: Service,
    deal_id: UUID | None = None,
    contact_id: UUID | None = None,
    owner_id: Annotated[str | None, Query(max_length=200)] = None,
    open: Annotated[bool | None, Query(description="true: not done yet; false: done")] = None,
    due_before: datetime | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ActivityPageOut:
    """Newest first."""
    where = ActivityFilter(deal_id=deal_id, contact_id=contact_id, owner_id=owner_id, open=open,
                           due_before=due_before)
    return ActivityPageOut.of(await activities.find(caller.workspace_id, where, cursor, limit))


@router.get("/activities/{activity_id}", response_model=ActivityOut)
async def get_activity(activity_id: UUID, caller: Reader, activities: Service, response: Response
                       ) -> ActivityOut:
    return _with_etag(await activities.get(caller.workspace_id, activity_id), response)


@router.patch("/activities/{activity_id}", response_model=ActivityOut,
              responses={409: {"description": "An activity from the interaction stream is read-only"},
                         412: {"description": "If-Match is not the current version"},
                         428: {"description": "If-Match is missing"}})
async def update_activity(activity_id: UUID, body: ActivityIn, caller: Writer, activities: Service,
                          response: Response, if_match: IfMatch = None) -> ActivityOut:
    """The fields sent change; ``done`` completes or reopens it."""
    version = expected_version(if_match)
    activity = await activities.update(caller.workspace_id, caller.subject, activity_id,
                                       body.model_dump(exclude_unset=True), version)
    return _with_etag(activity, response)


@router.delete("/activities/{activity_id}", status_code=204)
async def delete_activity(activity_id: UUID, caller: Writer, activities: Service, if_match: IfMatch = None
                          ) -> Response:
    await activities.delete(caller.workspace_id, caller.subject, activity_id, expected_version(if_match))
    return Response(status_code=204)


@router.post("/activities/{activity_id}/complete", response_model=ActivityOut,
             responses={409: {"description": "An activity from the interaction stream is read-only"}})
async def complete_activity(activity_id: UUID, caller: Writer, activities: Service, response: Response
                            ) -> ActivityOut:
    """Done now by the caller (a call, meeting or task); again changes nothing."""
    return _with_etag(await activities.complete(caller.workspace_id, caller.subject, activity_id), response)


@router.get("/deals/{deal_id}/activities", response_model=ActivityPageOut)
async def deal_timeline(deal_id: UUID, caller: Reader, activities: Service, cursor: Cursor = None,
                        limit: Limit = 50) -> ActivityPageOut:
    """The deal's timeline, latest first: when done, else when due, else when written."""
    return ActivityPageOut.of(await activities.timeline(caller.workspace_id, deal_id, cursor, limit))

"""The segments REST API under /v1: translation only; the use cases live in service/segments.py.

Rules are validated by the domain, so a bad rule answers 422 ``invalid-segment`` with one entry
per problem naming its place (``rules.all[2].op``). PATCH needs ``If-Match`` with the segment's
ETag (its version): 428 without one, 412 when it is stale. Not found, stale versions and bad
cursors are mapped to problems once for every router, in api/errors.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_contacts.domain.segment_model import Segment
from crm_contacts.domain.segments import InvalidSegment, RuleError
from crm_contacts.service.segments import MAX_MEMBERS_PAGE, MAX_PAGE, Recomputed, SegmentsService
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.problems import NotFound as NotFoundProblem
from crmkit.problems import Problem
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["segments"])

Reader = Annotated[Principal, Depends(require("contacts:read"))]
Writer = Annotated[Principal, Depends(require("contacts:write"))]
Cursor = Annotated[str | None, Query(max_length=500)]


Service = Annotated[SegmentsService, Depends(state("segments", SegmentsService))]


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=1000)
    rules: Any = Field(description="The rule tree: see services/contacts/docs/segments.md")


class SegmentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=1000)
    rules: Any = None


class SegmentOut(BaseModel):
    id: UUID
    name: str
    rules: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, segment: Segment) -> SegmentOut:
        return cls(id=segment.id, name=segment.name, rules=segment.rules, version=segment.version,
                   created_at=segment.created_at, updated_at=segment.updated_at)


class SegmentPageOut(BaseModel):
    items: list[SegmentOut]
    next_cursor: str | None


class MembersPageOut(BaseModel):
    items: list[UUID] = Field(description="Contact ids in id order; a page may hold fewer than limit")
    next_cursor: str | None


class RecomputeOut(BaseModel):
    segment: SegmentOut
    joined: int
    left: int


def _written(response: Response, result: Recomputed) -> SegmentOut:
    response.headers["ETag"] = etag(result.segment.version)
    return SegmentOut.of(result.segment)


@router.post("/segments", status_code=201, response_model=SegmentOut)
async def create_segment(body: SegmentIn, caller: Writer, service: Service, response: Response) -> SegmentOut:
    result = await service.create(caller.workspace_id, caller.subject, body.name, body.rules)
    response.headers["Location"] = f"/v1/segments/{result.segment.id}"
    return _written(response, result)


@router.get("/segments", response_model=SegmentPageOut)
async def list_segments(
    caller: Reader, service: Service, cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> SegmentPageOut:
    page = await service.list_segments(caller.workspace_id, cursor, limit)
    return SegmentPageOut(items=[SegmentOut.of(s) for s in page.items], next_cursor=page.next_cursor)


@router.get("/segments/{segment_id}", response_model=SegmentOut)
async def get_segment(segment_id: UUID, caller: Reader, service: Service, response: Response) -> SegmentOut:
    segment = await service.get(caller.workspace_id, segment_id)
    if segment is None:
        raise NotFoundProblem("segment")
    response.headers["ETag"] = etag(segment.version)
    return SegmentOut.of(segment)


@router.patch("/segments/{segment_id}", response_model=SegmentOut,
              responses={412: {"description": "If-Match is stale"}, 428: {"description": "No If-Match"}})
async def update_segment(
    segment_id: UUID, body: SegmentPatch, caller: Writer, service: Service, response: Response,
    if_match: Annotated[str | None, Header(max_length=100)] = None,
) -> SegmentOut:
    nulls = [f for f in ("name", "rules") if f in body.model_fields_set and getattr(body, f) is None]
    if nulls:
        raise InvalidSegment([RuleError(f, "cannot be null") for f in nulls])
    if body.name is None and body.rules is None:
        raise Problem(422, "invalid-segment", "The segment is not valid", "Nothing to change",
                      errors=[{"field": "body", "message": "give a name, rules or both"}])
    expected = expected_version(if_match)
    result = await service.update(caller.workspace_id, caller.subject, segment_id, expected, name=body.name,
                                  rules=body.rules)
    return _written(response, result)


@router.delete("/segments/{segment_id}", status_code=204, response_class=Response,
               responses={412: {"description": "If-Match is stale"}})
async def delete_segment(segment_id: UUID, caller: Writer, service: Service,
                         if_match: Annotated[str | None, Header(max_length=100)] = None) -> Response:
    expected = expected_version(if_match) if if_match is not None else None
    await service.delete(caller.workspace_id, caller.subject, segment_id, expected)
    return Response(status_code=204)


@router.get("/segments/{segment_id}/members", response_model=MembersPageOut)
async def segment_members(
    segment_id: UUID, caller: Reader, service: Service, cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_MEMBERS_PAGE)] = 100,
) -> MembersPageOut:
    page = await service.members(caller.workspace_id, segment_id, cursor, limit)
    return MembersPageOut(items=page.contact_ids, next_cursor=page.next_cursor)


@router.post("/segments/{segment_id}/recompute", response_model=RecomputeOut)
async def recompute_segment(segment_id: UUID, caller: Writer, service: Service) -> RecomputeOut:
    result = await service.recompute(caller.workspace_id, segment_id)
    return RecomputeOut(segment=SegmentOut.of(result.segment), joined=result.joined, left=result.left)

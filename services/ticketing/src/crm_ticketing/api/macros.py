"""Macros over HTTP: canned replies with placeholders and field actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_ticketing.api.messages import WrittenOut
from crm_ticketing.domain.replies import PLACEHOLDERS
from crm_ticketing.service.macros import MAX_MACROS_PAGE, Macros
from crm_ticketing.store.macros import Macro
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["macros"])

Reader = Annotated[Principal, Depends(require("tickets:read"))]
Writer = Annotated[Principal, Depends(require("tickets:write"))]
IfMatch = Annotated[str | None, Header(max_length=100)]
Service = Annotated[Macros, Depends(state("macros", Macros))]

_BODY = ("A template; placeholders: " + ", ".join(f"{{{{{p}}}}}" for p in PLACEHOLDERS)
         + ', each with an optional |default("...")')


class MacroIn(BaseModel):
    """Checked by the macro rules, so that every bad field is named in one 422."""

    model_config = ConfigDict(extra="allow")

    name: Any = Field(default=None, json_schema_extra={"type": "string"})
    body: Any = Field(default=None, json_schema_extra={"type": "string"}, description=_BODY)
    internal: Any = Field(default=None, json_schema_extra={"type": "boolean"},
                          description="Write an internal note instead of a reply")
    actions: Any = Field(default=None, json_schema_extra={"type": "object"},
                         description="status, priority, add_tags, remove_tags, assignee")


class MacroOut(BaseModel):
    id: UUID
    name: str
    body: str
    internal: bool
    actions: dict[str, Any]
    version: int
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, macro: Macro) -> MacroOut:
        return cls(id=macro.id, name=macro.name, body=macro.body, internal=macro.internal,
                   actions=macro.actions, version=macro.version, created_by=macro.created_by,
                   created_at=macro.created_at, updated_at=macro.updated_at)


class MacroPageOut(BaseModel):
    items: list[MacroOut]
    next_cursor: str | None


class ApplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: str | None = Field(default=None, min_length=1, max_length=200,
                              description="The id of the last message you saw: 409 collision if others "
                                          "wrote since")
    force: bool = False


@router.post("/macros", response_model=MacroOut, status_code=201,
             responses={409: {"description": "Another macro has this name"}})
async def create_macro(body: MacroIn, caller: Writer, macros: Service, response: Response) -> MacroOut:
    """An unknown or malformed placeholder in the body is a 422 naming it."""
    macro = await macros.create(caller.workspace_id, caller.subject, body.model_dump(exclude_unset=True))
    response.headers["ETag"] = etag(macro.version)
    return MacroOut.of(macro)


@router.get("/macros", response_model=MacroPageOut)
async def list_macros(
    caller: Reader,
    macros: Service,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_MACROS_PAGE)] = 50,
) -> MacroPageOut:
    page = await macros.list(caller.workspace_id, cursor, limit)
    return MacroPageOut(items=[MacroOut.of(m) for m in page.items], next_cursor=page.next_cursor)


@router.get("/macros/{macro_id}", response_model=MacroOut)
async def get_macro(macro_id: UUID, caller: Reader, macros: Service, response: Response) -> MacroOut:
    macro = await macros.get(caller.workspace_id, macro_id)
    response.headers["ETag"] = etag(macro.version)
    return MacroOut.of(macro)


@router.patch("/macros/{macro_id}", response_model=MacroOut)
async def update_macro(macro_id: UUID, body: MacroIn, caller: Writer, macros: Service, response: Response,
                       if_match: IfMatch = None) -> MacroOut:
    """`If-Match` required (428 without, 412 when stale); the fields sent change."""
    version = expected_version(if_match)
    macro = await macros.update(caller.workspace_id, macro_id, body.model_dump(exclude_unset=True), version)
    response.headers["ETag"] = etag(macro.version)
    return MacroOut.of(macro)


@router.delete("/macros/{macro_id}", status_code=204)
async def delete_macro(macro_id: UUID, caller: Writer, macros: Service, if_match: IfMatch = None) -> Response:
    await macros.delete(caller.workspace_id, macro_id, expected_version(if_match))
    return Response(status_code=204)


@router.post("/tickets/{ticket_id}/macros/{macro_id}", response_model=WrittenOut,
             responses={409: {"description": "collision, or no-recipient"}})
async def apply_macro(ticket_id: UUID, macro_id: UUID, caller: Writer, macros: Service, response: Response,
                      body: ApplyIn | None = None) -> WrittenOut:
    """Render the macro for this ticket and its requester, then send the reply (or write the
    note) and apply its actions in one transaction: all or nothing."""
    body = body or ApplyIn()
    written = await macros.apply(caller.workspace_id, caller.subject, ticket_id, macro_id, body.after,
                                 body.force)
    return WrittenOut.of(written, response)

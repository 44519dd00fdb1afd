"""Email templates over HTTP: CRUD and a preview for a contact."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_campaigns.domain.model import Template
from crm_campaigns.service.templates import MAX_PAGE, Templates
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["templates"])

Reader = Annotated[Principal, Depends(require("campaigns:read"))]
Writer = Annotated[Principal, Depends(require("campaigns:write"))]
IfMatch = Annotated[str | None, Header(max_length=100)]
Service = Annotated[Templates, Depends(state("templates", Templates))]

_PLACEHOLDERS = ("Jinja2 (sandboxed): {{ contact.first_name }}, {{ contact.custom.<key> }} for keys in "
                 "`fields`, {{ company.name }}, {{ unsubscribe_url }}, with | default(\"...\")")


class TemplateIn(BaseModel):
    """Checked by the template rules, so that every bad field is named in one 422."""

    model_config = ConfigDict(extra="forbid")

    name: Any = Field(default=None, json_schema_extra={"type": "string"})
    subject: Any = Field(default=None, json_schema_extra={"type": "string"}, description=_PLACEHOLDERS)
    html: Any = Field(default=None, json_schema_extra={"type": "string"})
    text: Any = Field(default=None, json_schema_extra={"type": "string"})
    fields: Any = Field(default=None, json_schema_extra={"type": "array", "items": {"type": "string"}},
                        description="The contact custom field keys the template may use")


class TemplateOut(BaseModel):
    id: UUID
    name: str
    subject: str
    html: str
    text: str
    fields: list[str]
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, t: Template) -> TemplateOut:
        return cls(id=UUID(t.id), name=t.name, subject=t.subject, html=t.html, text=t.text,
                   fields=list(t.fields),
                   version=t.version, created_at=t.created_at, updated_at=t.updated_at)


class TemplatePageOut(BaseModel):
    items: list[TemplateOut]
    next_cursor: str | None


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_id: UUID


class PreviewOut(BaseModel):
    subject: str
    html: str
    text: str


def _body(body: TemplateIn) -> dict[str, Any]:
    return {k: v for k, v in body.model_dump(exclude_unset=True).items()}


@router.post("/templates", response_model=TemplateOut, status_code=201)
async def create_template(body: TemplateIn, caller: Writer, templates: Service,
                          response: Response) -> TemplateOut:
    """A syntax error or an unknown placeholder is a 422 naming it."""
    template = await templates.create(caller.workspace_id, _body(body))
    response.headers["ETag"] = etag(template.version)
    return TemplateOut.of(template)


@router.get("/templates", response_model=TemplatePageOut)
async def list_templates(caller: Reader, templates: Service,
                         cursor: Annotated[str | None, Query(max_length=100)] = None,
                         limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> TemplatePageOut:
    items = await templates.list(caller.workspace_id, limit, cursor)
    return TemplatePageOut(items=[TemplateOut.of(t) for t in items],
                           next_cursor=items[-1].id if len(items) == limit else None)


@router.get("/templates/{template_id}", response_model=TemplateOut)
async def get_template(template_id: UUID, caller: Reader, templates: Service,
                       response: Response) -> TemplateOut:
    template = await templates.get(caller.workspace_id, str(template_id))
    response.headers["ETag"] = etag(template.version)
    return TemplateOut.of(template)


@router.patch("/templates/{template_id}", response_model=TemplateOut)
async def update_template(template_id: UUID, body: TemplateIn, caller: Writer, templates: Service,
                          response: Response, if_match: IfMatch = None) -> TemplateOut:
    """`If-Match` required (428 without, 412 when stale); the fields sent change."""
    version = expected_version(if_match)
    template = await templates.update(caller.workspace_id, str(template_id), _body(body), version)
    response.headers["ETag"] = etag(template.version)
    return TemplateOut.of(template)


@router.delete("/templates/{template_id}", status_code=204,
               responses={409: {"description": "A scheduled, sending or paused campaign uses it"}})
async def delete_template(template_id: UUID, caller: Writer, templates: Service) -> Response:
    await templates.delete(caller.workspace_id, str(template_id))
    return Response(status_code=204)


@router.post("/templates/{template_id}/preview", response_model=PreviewOut)
async def preview_template(template_id: UUID, body: PreviewIn, caller: Reader,
                           templates: Service) -> PreviewOut:
    """The template rendered for the contact, as that contact would get it (without tracking)."""
    rendered = await templates.preview(caller.workspace_id, str(template_id), str(body.contact_id))
    return PreviewOut(subject=rendered.subject, html=rendered.html, text=rendered.text)

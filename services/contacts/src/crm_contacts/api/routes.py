"""Contacts' REST API under /v1: the contact record, its timeline, its audit trail and the
workspace's custom fields. Translation only; the use cases live in service/."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Query, Response

from crm_contacts.api.deps import AuditCursor, Contacts, Reader, Writer
from crm_contacts.api.schemas import (
    AuditOut,
    AuditPageOut,
    ContactIn,
    ContactOut,
    ContactPageOut,
    FieldIn,
    FieldOut,
    TimelineEntryOut,
    TimelinePageOut,
)
from crm_contacts.domain.fields import Entity
from crm_contacts.service import MAX_PAGE
from crm_contacts.store.contacts import ContactFilter
from crmkit.etags import etag, expected_version
from crmkit.fields import FieldDefinition, FieldType
from crmkit.problems import NotFound, Problem

router = APIRouter(prefix="/v1", tags=["contacts"])

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Cursor = Annotated[str | None, Query(max_length=500)]


@router.post("/contacts", status_code=201, response_model=ContactOut)
async def create_contact(body: ContactIn, caller: Writer, service: Contacts,
                         response: Response) -> ContactOut:
    contact = await service.create_contact(caller.workspace_id, caller.subject, body.given())
    response.headers["ETag"] = etag(contact.version)
    response.headers["Location"] = f"/v1/contacts/{contact.id}"
    return ContactOut.of(contact)


@router.get("/contacts", response_model=ContactPageOut)
async def list_contacts(
    caller: Reader,
    service: Contacts,
    q: Annotated[str | None, Query(max_length=200, description="Words that names, emails, phones or "
                                   "company names start with")] = None,
    lifecycle_stage: Annotated[str | None, Query(max_length=50)] = None,
    owner_id: Annotated[str | None, Query(max_length=200)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    company_id: UUID | None = None,
    updated_after: datetime | None = None,
    sort: Literal["created_at", "updated_at", "last_seen_at", "name"] = "created_at",
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ContactPageOut:
    where = ContactFilter(lifecycle_stage=lifecycle_stage, owner_id=owner_id,
                          tag=tag.strip().lower() if tag else None, company_id=company_id, query=q,
                          updated_after=updated_after)
    page = await service.list_contacts(caller.workspace_id, where, sort, cursor, limit)
    return ContactPageOut(items=[ContactOut.of(c) for c in page.items], next_cursor=page.next_cursor)


@router.get("/contacts/{contact_id}", response_model=ContactOut)
async def get_contact(contact_id: UUID, caller: Reader, service: Contacts, response: Response) -> ContactOut:
    """A merged contact's id answers with its survivor (whose id is in the body and in
    Content-Location)."""
    contact = await service.get_contact(caller.workspace_id, contact_id)
    if contact is None:
        raise NotFound("contact")
    response.headers["ETag"] = etag(contact.version)
    if contact.id != contact_id:
        response.headers["Content-Location"] = f"/v1/contacts/{contact.id}"
    return ContactOut.of(contact)


@router.patch("/contacts/{contact_id}", response_model=ContactOut)
async def update_contact(contact_id: UUID, body: ContactIn, caller: Writer, service: Contacts,
                         response: Response,
                         if_match: Annotated[str | None, Header(max_length=100)] = None) -> ContactOut:
    version = expected_version(if_match)
    contact = await service.update_contact(caller.workspace_id, caller.subject, contact_id, body.given(),
                                           version)
    response.headers["ETag"] = etag(contact.version)
    return ContactOut.of(contact)


@router.get("/contacts/{contact_id}/timeline", response_model=TimelinePageOut)
async def get_timeline(contact_id: UUID, caller: Reader, service: Contacts, cursor: Cursor = None,
                       limit: Limit = 50) -> TimelinePageOut:
    page = await service.timeline(caller.workspace_id, contact_id, cursor, limit)
    if page is None:
        raise NotFound("contact")
    return TimelinePageOut(items=[TimelineEntryOut.of(e) for e in page.entries],
                           next_cursor=page.next_cursor)


@router.get("/contacts/{contact_id}/audit", response_model=AuditPageOut)
async def contact_audit(contact_id: UUID, caller: Reader, service: Contacts,
                        before: AuditCursor = None, limit: Limit = 50) -> AuditPageOut:
    """Every write to the contact, newest first: who, when, before and after."""
    entries = await service.history(caller.workspace_id, "contact", contact_id, before, limit)
    if not entries and before is None and await service.get_contact(caller.workspace_id, contact_id) is None:
        raise NotFound("contact")
    next_cursor = str(entries[-1].id) if len(entries) == limit else None
    return AuditPageOut(items=[AuditOut.of(e) for e in entries], next_cursor=next_cursor)


@router.get("/fields", response_model=list[FieldOut])
async def list_fields(caller: Reader, service: Contacts,
                      entity: Literal["contact", "company"] = "contact") -> list[FieldOut]:
    return [FieldOut.of(d) for d in await service.fields(caller.workspace_id, Entity(entity))]


@router.post("/fields", status_code=201, response_model=FieldOut)
async def define_field(body: FieldIn, caller: Writer, service: Contacts) -> FieldOut:
    """Define a custom field. Takes effect at once: values are JSON, no table changes."""
    definition = FieldDefinition(Entity(body.entity), body.key, body.label, FieldType(body.type),
                                 tuple(body.options))
    if not await service.define_field(caller.workspace_id, caller.subject, definition):
        raise Problem(409, "field-exists", "Field exists", f"{body.entity}.{body.key} is already defined")
    return FieldOut.of(definition)


@router.delete("/fields/{entity}/{key}", status_code=204)
async def remove_field(entity: Literal["contact", "company"], key: str, caller: Writer,
                       service: Contacts) -> None:
    if not await service.remove_field(caller.workspace_id, caller.subject, Entity(entity), key):
        raise NotFound("field")

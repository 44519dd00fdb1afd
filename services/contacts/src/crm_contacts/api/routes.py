"""Contacts' REST API under /v1: translation only; the use cases live in service.py."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request

from crm_contacts.api.schemas import ContactOut, TimelineEntryOut, TimelinePageOut
from crm_contacts.domain.errors import InvalidCursor
from crm_contacts.service import MAX_PAGE, ContactsService
from crmkit.auth import Principal, require
from crmkit.problems import NotFound, Problem

router = APIRouter(prefix="/v1", tags=["contacts"])

Reader = Annotated[Principal, Depends(require("contacts:read"))]


def contacts_service(request: Request) -> ContactsService:
    service = request.app.state.service
    assert isinstance(service, ContactsService)
    return service


Service = Annotated[ContactsService, Depends(contacts_service)]


@router.get("/contacts/{contact_id}", response_model=ContactOut)
async def get_contact(contact_id: UUID, caller: Reader, service: Service) -> ContactOut:
    contact = await service.get_contact(caller.workspace_id, contact_id)
    if contact is None:
        raise NotFound("contact")
    return ContactOut.of(contact)


@router.get("/contacts/{contact_id}/timeline", response_model=TimelinePageOut)
async def get_timeline(
    contact_id: UUID,
    caller: Reader,
    service: Service,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> TimelinePageOut:
    try:
        page = await service.timeline(caller.workspace_id, contact_id, cursor, limit)
    except InvalidCursor as exc:
        raise Problem(422, "invalid-cursor", "Invalid cursor", str(exc)) from exc
    if page is None:
        raise NotFound("contact")
    return TimelinePageOut(items=[TimelineEntryOut.of(e) for e in page.entries],
                           next_cursor=page.next_cursor)

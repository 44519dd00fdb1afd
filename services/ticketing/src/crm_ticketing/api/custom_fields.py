"""Definitions of tickets' custom fields under /v1/ticket-fields."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from crm_ticketing.service.custom_fields import TicketFields
from crm_ticketing.store.custom_fields import ENTITY
from crmkit.auth import Principal, require
from crmkit.fields import FieldDefinitionIn, FieldDefinitionOut, FieldDefinitionsOut
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["tickets"])

Reader = Annotated[Principal, Depends(require("tickets:read"))]
Admin = Annotated[Principal, Depends(require("tickets:admin"))]
Fields = Annotated[TicketFields, Depends(state("ticket_fields", TicketFields))]


@router.get("/ticket-fields", response_model=FieldDefinitionsOut)
async def list_fields(caller: Reader, fields: Fields) -> FieldDefinitionsOut:
    return FieldDefinitionsOut.of(await fields.list(caller.workspace_id))


@router.post("/ticket-fields", response_model=FieldDefinitionOut, status_code=201,
             responses={409: {"description": "The key is defined already"}})
async def define_field(body: FieldDefinitionIn, caller: Admin, fields: Fields) -> FieldDefinitionOut:
    """Define a custom field of the workspace's tickets; set its values with the ticket's PATCH
    (``custom_fields``)."""
    return FieldDefinitionOut.of(await fields.define(caller.workspace_id, body.definition(ENTITY)))


@router.delete("/ticket-fields/{key}", status_code=204)
async def remove_field(key: str, caller: Admin, fields: Fields) -> Response:
    """The values stay on the tickets but are no longer shown or accepted."""
    await fields.remove(caller.workspace_id, key)
    return Response(status_code=204)

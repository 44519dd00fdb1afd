"""Definitions of tickets' custom fields under /v1/ticket-fields."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_ticketing.service.custom_fields import TicketFields
from crm_ticketing.store.custom_fields import ENTITY
from crmkit.auth import Principal, require
from crmkit.fields import FieldDefinition, FieldType
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["tickets"])

Reader = Annotated[Principal, Depends(require("tickets:read"))]
Admin = Annotated[Principal, Depends(require("tickets:admin"))]
Fields = Annotated[TicketFields, Depends(state("ticket_fields", TicketFields))]


class FieldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(max_length=63, description="Lower-case letters, digits and _, starting with a letter")
    label: str = Field(max_length=200)
    type: FieldType
    options: list[str] = Field(default_factory=list, max_length=200,
                               description="The choices of an enum or multi_enum field")


class FieldOut(BaseModel):
    key: str
    label: str
    type: FieldType
    options: list[str]

    @classmethod
    def of(cls, definition: FieldDefinition) -> FieldOut:
        return cls(key=definition.key, label=definition.label, type=definition.type,
                   options=list(definition.options))


class FieldsOut(BaseModel):
    items: list[FieldOut]


@router.get("/ticket-fields", response_model=FieldsOut)
async def list_fields(caller: Reader, fields: Fields) -> FieldsOut:
    return FieldsOut(items=[FieldOut.of(d) for d in await fields.list(caller.workspace_id)])


@router.post("/ticket-fields", response_model=FieldOut, status_code=201,
             responses={409: {"description": "The key is defined already"}})
async def define_field(body: FieldIn, caller: Admin, fields: Fields) -> FieldOut:
    """Define a custom field of the workspace's tickets; set its values with the ticket's PATCH
    (``custom_fields``)."""
    definition = FieldDefinition(ENTITY, body.key, body.label, body.type, tuple(body.options))
    return FieldOut.of(await fields.define(caller.workspace_id, definition))


@router.delete("/ticket-fields/{key}", status_code=204)
async def remove_field(key: str, caller: Admin, fields: Fields) -> Response:
    """The values stay on the tickets but are no longer shown or accepted."""
    await fields.remove(caller.workspace_id, key)
    return Response(status_code=204)

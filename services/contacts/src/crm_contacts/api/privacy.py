"""Merges, consent and GDPR under /v1/contacts/{id}/..."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from crm_contacts.api.deps import Privacy, Reader, Writer
from crm_contacts.api.schemas import ContactOut
from crm_contacts.service.merges import MergesService
from crm_contacts.store.privacy import ConsentRecord, ErasureStatus
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.problems import NotFound
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["merges, consent and GDPR"])
Eraser = Annotated[Principal, Depends(require("contacts:erase"))]


Merges = Annotated[MergesService, Depends(state("merges", MergesService))]


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loser_id: UUID
    fields: dict[str, str] = Field(default_factory=dict, max_length=600,
                                   description="Per field, 'survivor' (default) or 'loser'")


class MergeOut(BaseModel):
    loser_id: UUID
    survivor_id: UUID
    actor: str
    at: datetime
    fields: dict[str, str]


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(max_length=32)
    purpose: str = Field(max_length=32)
    status: str = Field(max_length=16)
    source: str = Field(default="", max_length=200, description="Where the statement was made")
    proof: str = Field(default="", max_length=4000, description="A form id, an IP and time, a recording...")


class ConsentOut(BaseModel):
    channel: str
    purpose: str
    status: str
    source: str
    proof: str
    at: datetime

    @classmethod
    def of(cls, record: ConsentRecord) -> ConsentOut:
        return cls(channel=record.channel, purpose=record.purpose, status=record.status, source=record.source,
                   proof=record.proof, at=record.at)


class ConsentsOut(BaseModel):
    current: list[ConsentOut]
    history: list[ConsentOut]


class ErasureOut(BaseModel):
    contact_id: UUID
    requested_at: datetime
    requested_by: str
    expected: list[str]
    confirmed: dict[str, datetime]
    complete: bool

    @classmethod
    def of(cls, contact_id: UUID, status: ErasureStatus) -> ErasureOut:
        return cls(contact_id=contact_id, requested_at=status.requested_at, requested_by=status.requested_by,
                   expected=list(status.expected), confirmed=status.confirmed, complete=status.complete)


@router.post("/contacts/{survivor_id}/merge", response_model=ContactOut)
async def merge(survivor_id: UUID, body: MergeIn, caller: Writer, service: Merges, response: Response,
                if_match: Annotated[str | None, Header(max_length=100)] = None) -> ContactOut:
    """Merge ``loser_id`` into this contact. If-Match names the survivor's version."""
    contact = await service.merge(caller.workspace_id, caller.subject, survivor_id, body.loser_id,
                                  body.fields, expected_version(if_match))
    response.headers["ETag"] = etag(contact.version)
    return ContactOut.of(contact)


@router.get("/contacts/{contact_id}/merges", response_model=list[MergeOut])
async def merges(contact_id: UUID, caller: Reader, service: Merges) -> list[MergeOut]:
    return [MergeOut(loser_id=m.loser_id, survivor_id=m.survivor_id, actor=m.actor, at=m.at, fields=m.choices)
            for m in await service.history(caller.workspace_id, contact_id)]


@router.get("/contacts/{contact_id}/consents", response_model=ConsentsOut)
async def consents(contact_id: UUID, caller: Reader, service: Privacy) -> ConsentsOut:
    found = await service.consents(caller.workspace_id, contact_id)
    if found is None:
        raise NotFound("contact")
    current, history = found
    return ConsentsOut(current=[ConsentOut.of(c) for c in current],
                       history=[ConsentOut.of(c) for c in history])


@router.put("/contacts/{contact_id}/consents", response_model=ConsentOut)
async def set_consent(contact_id: UUID, body: ConsentIn, caller: Writer, service: Privacy) -> ConsentOut:
    """Record a consent statement for a channel and purpose (granted or withdrawn)."""
    record = await service.set_consent(caller.workspace_id, caller.subject, contact_id, body.channel,
                                       body.purpose, body.status, body.source, body.proof)
    return ConsentOut.of(record)


@router.post("/contacts/{contact_id}/erasure", status_code=202, response_model=ErasureOut)
async def erase(contact_id: UUID, caller: Eraser, service: Privacy) -> ErasureOut:
    """Erase the person (GDPR art. 17). Irreversible; needs the contacts:erase scope (admins)."""
    status = await service.erase(caller.workspace_id, caller.subject, contact_id)
    return ErasureOut.of(contact_id, status)


@router.get("/contacts/{contact_id}/erasure", response_model=ErasureOut)
async def erasure_status(contact_id: UUID, caller: Reader, service: Privacy) -> ErasureOut:
    status = await service.erasure_status(caller.workspace_id, contact_id)
    if status is None:
        raise NotFound("erasure")
    return ErasureOut.of(contact_id, status)


@router.get("/contacts/{contact_id}/personal-data", response_class=Response, responses={200: {
    "description": "A zip archive: manifest.json, contacts.json and <service>.json per service that "
                   "answered; with format=json, one JSON document with the parts inline",
    "content": {"application/zip": {}, "application/json": {}},
}})
async def personal_data(contact_id: UUID, caller: Eraser, service: Privacy,
                        as_: Annotated[Literal["zip", "json"], Query(alias="format")] = "zip") -> Response:
    """Everything the platform holds about the person (GDPR art. 15 and 20), gathered from every
    service that holds personal data. A service that does not answer is marked unavailable in
    the manifest; the export still comes back."""
    export = await service.personal_data(caller.workspace_id, contact_id)
    if export is None:
        raise NotFound("contact")
    headers = {"Cache-Control": "no-store"}
    if as_ == "json":
        return JSONResponse(export.inline(), headers=headers)
    body = await asyncio.to_thread(export.archive)  # up to tens of MB to compress
    headers["Content-Disposition"] = f"attachment; filename=personal-data-{contact_id}.zip"
    return Response(body, media_type="application/zip", headers=headers)

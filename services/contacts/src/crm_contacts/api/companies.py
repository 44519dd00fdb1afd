"""Companies' REST API under /v1."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Query, Response

from crm_contacts.api.deps import AuditCursor, Companies, Contacts, Reader, Writer
from crm_contacts.api.schemas import AuditOut, AuditPageOut, CompanyIn, CompanyOut, CompanyPageOut
from crm_contacts.service import MAX_PAGE
from crmkit.etags import etag, expected_version
from crmkit.problems import NotFound

router = APIRouter(prefix="/v1", tags=["companies"])
IfMatch = Annotated[str | None, Header(max_length=100)]


@router.post("/companies", status_code=201, response_model=CompanyOut)
async def create_company(body: CompanyIn, caller: Writer, service: Companies,
                         response: Response) -> CompanyOut:
    company = await service.create(caller.workspace_id, caller.subject, body.given())
    response.headers["ETag"] = etag(company.version)
    response.headers["Location"] = f"/v1/companies/{company.id}"
    return CompanyOut.of(company)


@router.get("/companies", response_model=CompanyPageOut)
async def list_companies(
    caller: Reader, service: Companies,
    q: Annotated[str | None, Query(max_length=200, description="The start of the name")] = None,
    domain: Annotated[str | None, Query(max_length=253)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> CompanyPageOut:
    items, next_cursor = await service.page(caller.workspace_id, q, domain, cursor, limit)
    return CompanyPageOut(items=[CompanyOut.of(c) for c in items], next_cursor=next_cursor)


@router.get("/companies/{company_id}", response_model=CompanyOut)
async def get_company(company_id: UUID, caller: Reader, service: Companies, response: Response) -> CompanyOut:
    company = await service.get(caller.workspace_id, company_id)
    if company is None:
        raise NotFound("company")
    response.headers["ETag"] = etag(company.version)
    return CompanyOut.of(company)


@router.patch("/companies/{company_id}", response_model=CompanyOut)
async def update_company(company_id: UUID, body: CompanyIn, caller: Writer, service: Companies,
                         response: Response, if_match: IfMatch = None) -> CompanyOut:
    company = await service.update(caller.workspace_id, caller.subject, company_id, body.given(),
                                   expected_version(if_match))
    response.headers["ETag"] = etag(company.version)
    return CompanyOut.of(company)


@router.delete("/companies/{company_id}", status_code=204)
async def delete_company(company_id: UUID, caller: Writer, service: Companies,
                         if_match: IfMatch = None) -> None:
    await service.delete(caller.workspace_id, caller.subject, company_id, expected_version(if_match))


@router.get("/companies/{company_id}/audit", response_model=AuditPageOut)
async def company_audit(company_id: UUID, caller: Reader, service: Contacts,
                        before: AuditCursor = None,
                        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> AuditPageOut:
    entries = await service.history(caller.workspace_id, "company", company_id, before, limit)
    if not entries and before is None:
        raise NotFound("company")
    next_cursor = str(entries[-1].id) if len(entries) == limit else None
    return AuditPageOut(items=[AuditOut.of(e) for e in entries], next_cursor=next_cursor)

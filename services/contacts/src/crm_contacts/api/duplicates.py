"""The duplicates REST API under /v1: translation only; the use cases live in
service/duplicates.py, the rules in docs/duplicates.md.

POST starts a scan of the caller's workspace and answers 202 at once; GET follows it; its
candidates are paged highest score first with an opaque cursor (422 for a cursor this API did
not give out). Another workspace's scan is a 404, like one that does not exist.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from crm_contacts.domain.duplicates import Candidate, DuplicateScan
from crm_contacts.service.duplicates import MAX_PAGE, DuplicatesService
from crmkit.auth import Principal, require
from crmkit.pagination import InvalidCursor
from crmkit.problems import NotFound, Problem
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["duplicates"])

Reader = Annotated[Principal, Depends(require("contacts:read"))]
Writer = Annotated[Principal, Depends(require("contacts:write"))]


Service = Annotated[DuplicatesService, Depends(state("duplicates", DuplicatesService))]


class ScanCountsOut(BaseModel):
    contacts_scanned: int
    blocks_compared: int
    blocks_skipped: int
    comparisons: int
    candidates: int


class SkippedBlockOut(BaseModel):
    kind: str
    key: str
    size: int


class ScanOut(BaseModel):
    id: UUID
    status: str
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    counts: ScanCountsOut
    skipped_blocks: list[SkippedBlockOut]
    error: str | None

    @classmethod
    def of(cls, scan: DuplicateScan) -> ScanOut:
        return cls(
            id=scan.id, status=scan.status.value, requested_by=scan.requested_by,
            created_at=scan.created_at, started_at=scan.started_at, finished_at=scan.finished_at,
            counts=ScanCountsOut(contacts_scanned=scan.contacts_scanned,
                                 blocks_compared=scan.blocks_compared,
                                 blocks_skipped=scan.blocks_skipped, comparisons=scan.comparisons,
                                 candidates=scan.candidates),
            skipped_blocks=[SkippedBlockOut(**s) for s in scan.skipped],
            error=scan.error,
        )


class ReasonOut(BaseModel):
    rule: str
    score: int
    detail: str


class CandidateOut(BaseModel):
    contact_a: UUID
    contact_b: UUID
    score: int
    reasons: list[ReasonOut]

    @classmethod
    def of(cls, candidate: Candidate) -> CandidateOut:
        reasons: list[dict[str, Any]] = candidate.reasons
        return cls(contact_a=candidate.contact_a, contact_b=candidate.contact_b, score=candidate.score,
                   reasons=[ReasonOut(**r) for r in reasons])


class CandidatePageOut(BaseModel):
    items: list[CandidateOut]
    next_cursor: str | None


@router.post("/duplicate-scans", status_code=202, response_model=ScanOut)
async def start_scan(caller: Writer, service: Service, request: Request, response: Response) -> ScanOut:
    """Scan the workspace's contacts for duplicates in the background. When a scan is already
    queued or running for the workspace, that scan is answered instead of a new one."""
    scan = await service.start_scan(caller.workspace_id, caller.subject)
    response.headers["Location"] = str(request.url_for("get_scan", scan_id=scan.id).path)
    return ScanOut.of(scan)


@router.get("/duplicate-scans/{scan_id}", response_model=ScanOut)
async def get_scan(scan_id: UUID, caller: Reader, service: Service) -> ScanOut:
    scan = await service.get_scan(caller.workspace_id, scan_id)
    if scan is None:
        raise NotFound("duplicate scan")
    return ScanOut.of(scan)


@router.get("/duplicate-scans/{scan_id}/candidates", response_model=CandidatePageOut)
async def list_candidates(
    scan_id: UUID,
    caller: Reader,
    service: Service,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> CandidatePageOut:
    """The scan's candidate pairs, highest score first; empty until the scan is done."""
    try:
        page = await service.candidates(caller.workspace_id, scan_id, cursor, limit)
    except InvalidCursor as exc:
        raise Problem(422, "invalid-cursor", "Invalid cursor", str(exc)) from exc
    if page is None:
        raise NotFound("duplicate scan")
    return CandidatePageOut(items=[CandidateOut.of(c) for c in page.candidates],
                            next_cursor=page.next_cursor)

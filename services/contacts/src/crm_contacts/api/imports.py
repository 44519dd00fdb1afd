"""CSV imports and contact exports under /v1 (docs/import-export.md). Translation only: the use
cases are in service/imports.py and service/exports.py.

Registered before routes.router, so that /v1/contacts/export is not read as a contact id.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from crm_contacts.api.deps import Reader, Writer
from crm_contacts.api.schemas import ContactOut
from crm_contacts.domain.imports import FileTooLarge, ImportJob, InvalidCsv, OnDuplicate
from crm_contacts.domain.model import Contact, IdentityKind
from crm_contacts.service.exports import Export, ExportFilter, ExportsService
from crm_contacts.service.imports import MAX_PAGE, ImportsService
from crmkit.fields import FieldDefinition
from crmkit.problems import Problem
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["imports"])

CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain", "application/vnd.ms-excel"})
_FORMULA = re.compile(r"^[=@\t\r]|^[+-](?![\d .()-]*$)")  # what a spreadsheet would run as a formula


Imports = Annotated[ImportsService, Depends(state("imports", ImportsService))]
Exports = Annotated[ExportsService, Depends(state("exports", ExportsService))]


class ImportIn(BaseModel):
    mapping: dict[str, str] = Field(
        description="CSV column (as its header row names it) -> target: first_name, last_name, "
                    "display_name, emails, phones, identities.<kind>, lifecycle_stage, owner_id, tags, "
                    "company, custom_fields.<key>",
        examples=[{"E-mail": "emails", "Phone": "phones", "First": "first_name",
                   "Plan": "custom_fields.plan"}])
    on_duplicate: OnDuplicate = Field(
        default=OnDuplicate.SKIP,
        description="What a row whose identity is already known does: skip it, update that contact, or "
                    "create (a row with a known identity is then an error)")
    region: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$",
                               description="ISO 3166 alpha-2: reads national phone numbers")


class ImportJobOut(BaseModel):
    id: UUID
    status: str = Field(description="awaiting_upload, queued, running, done, failed or cancelled")
    on_duplicate: str
    region: str | None
    mapping: dict[str, str]
    total: int = Field(description="data rows staged from the file")
    position: int = Field(description="rows applied so far")
    progress: float = Field(description="percent of the rows applied")
    created: int
    updated: int
    skipped: int
    failed: int
    error_rows: int = Field(description="rows in the error report (failed, or skipped for a reason)")
    error: str | None
    file_bytes: int
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    errors_url: str

    @classmethod
    def of(cls, job: ImportJob) -> ImportJobOut:
        return cls(id=job.id, status=job.status.value, on_duplicate=job.on_duplicate.value, region=job.region,
                   mapping=job.mapping, total=job.total_rows, position=job.position, progress=job.progress,
                   created=job.created, updated=job.updated, skipped=job.skipped, failed=job.failed,
                   error_rows=job.error_rows, error=job.error, file_bytes=job.file_bytes,
                   created_by=job.created_by, created_at=job.created_at, started_at=job.started_at,
                   finished_at=job.finished_at, errors_url=f"/v1/imports/{job.id}/errors.csv")


class UploadOut(BaseModel):
    method: str = "PUT"
    url: str
    content_type: str = "text/csv"
    max_bytes: int


class ImportCreatedOut(ImportJobOut):
    upload: UploadOut


class ImportPageOut(BaseModel):
    items: list[ImportJobOut]
    next_cursor: str | None


@router.post("/imports", status_code=201, response_model=ImportCreatedOut,
             summary="Create an import job: its column mapping; the file follows with PUT .../file")
async def create_import(body: ImportIn, caller: Writer, service: Imports, response: Response
                        ) -> ImportCreatedOut:
    job = await service.create_job(caller.workspace_id, caller.subject, body.mapping, body.on_duplicate,
                                   body.region)
    response.headers["Location"] = f"/v1/imports/{job.id}"
    upload = UploadOut(url=f"/v1/imports/{job.id}/file", max_bytes=service.max_bytes)
    return ImportCreatedOut(**ImportJobOut.of(job).model_dump(), upload=upload)


@router.put("/imports/{job_id}/file", status_code=202, response_model=ImportJobOut,
            summary="Upload the CSV (UTF-8, header row first) as the raw body; streamed, then queued",
            openapi_extra={"requestBody": {"required": True, "content": {
                "text/csv": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload_file(job_id: UUID, request: Request, caller: Writer, service: Imports) -> ImportJobOut:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in CSV_TYPES:
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      "Send the file as the raw request body with Content-Type: text/csv")
    length = request.headers.get("content-length")
    try:
        job = await service.upload(caller.workspace_id, job_id, request.stream(),
                                   int(length) if length and length.isdigit() else None)
    except FileTooLarge as exc:
        raise Problem(413, "file-too-large", "The file is too large",
                      f"An import file is at most {exc.limit} bytes; split it", max_bytes=exc.limit) from exc
    except InvalidCsv as exc:
        raise Problem(422, "invalid-csv", "The file is not a CSV this import can read", str(exc)) from exc
    except ClientDisconnect as exc:  # nothing was staged; the job still waits for its file
        raise Problem(400, "upload-interrupted", "The upload broke off", "Send the file again") from exc
    return ImportJobOut.of(job)


@router.get("/imports", response_model=ImportPageOut, summary="Recent imports, newest first")
async def list_imports(caller: Reader, service: Imports,
                       cursor: Annotated[str | None, Query(max_length=500)] = None,
                       limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20) -> ImportPageOut:
    page = await service.list_jobs(caller.workspace_id, cursor, limit)
    return ImportPageOut(items=[ImportJobOut.of(j) for j in page.items], next_cursor=page.next_cursor)


@router.get("/imports/{job_id}", response_model=ImportJobOut)
async def get_import(job_id: UUID, caller: Reader, service: Imports) -> ImportJobOut:
    return ImportJobOut.of(await service.get(caller.workspace_id, job_id))


@router.get("/imports/{job_id}/errors.csv", response_class=StreamingResponse,
            summary="The error report: row, field (the CSV column), message",
            responses={200: {"content": {"text/csv": {}}}})
async def import_errors(job_id: UUID, caller: Reader, service: Imports) -> StreamingResponse:
    lines = await service.error_report(caller.workspace_id, job_id)
    return StreamingResponse(lines, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="import-{job_id}-errors.csv"'})


@router.post("/imports/{job_id}/cancel", response_model=ImportJobOut,
             summary="Stop an import that has not finished; the batches applied stay")
async def cancel_import(job_id: UUID, caller: Writer, service: Imports) -> ImportJobOut:
    return ImportJobOut.of(await service.cancel(caller.workspace_id, job_id))


@router.get("/contacts/export", tags=["contacts"], response_class=StreamingResponse,
            summary="Every live contact a filter or a segment selects, as CSV or NDJSON, streamed",
            responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}})
async def export_contacts(
    caller: Reader,
    service: Exports,
    format: Literal["csv", "ndjson"] = "csv",
    segment_id: UUID | None = None,
    lifecycle_stage: Annotated[str | None, Query(max_length=50)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    owner_id: Annotated[str | None, Query(max_length=200)] = None,
) -> StreamingResponse:
    where = ExportFilter(lifecycle_stage=lifecycle_stage, owner_id=owner_id, tag=tag, segment_id=segment_id)
    export = await service.export(caller.workspace_id, where)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    body, media_type = ((_csv(export), "text/csv; charset=utf-8") if format == "csv"
                        else (_ndjson(export), "application/x-ndjson"))
    return StreamingResponse(body, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="contacts-{stamp}.{format}"'})


async def _ndjson(export: Export) -> AsyncIterator[bytes]:
    async for page in export.pages:
        yield "".join(ContactOut.of(c).model_dump_json() + "\n" for c in page).encode()


async def _csv(export: Export) -> AsyncIterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "first_name", "last_name", "display_name", "emails", "phones", "identities",
                     "lifecycle_stage", "owner_id", "tags", "companies",
                     *(f"custom_fields.{f.key}" for f in export.fields), "created_at", "updated_at"])
    yield out.getvalue().encode()
    async for page in export.pages:
        out.seek(0)
        out.truncate()
        writer.writerows([_safe(cell) for cell in _row(c, export.fields)] for c in page)
        yield out.getvalue().encode()


def _row(contact: Contact, fields: list[FieldDefinition]) -> list[str]:
    def values(*kinds: IdentityKind) -> str:
        return "|".join(i.value if len(kinds) == 1 else f"{i.kind.value}:{i.value}"
                        for i in contact.identities if i.kind in kinds)

    others = tuple(k for k in IdentityKind if k not in (IdentityKind.EMAIL, IdentityKind.PHONE))
    return [str(contact.id), contact.first_name, contact.last_name, contact.display_name,
            values(IdentityKind.EMAIL), values(IdentityKind.PHONE), values(*others),
            contact.lifecycle_stage.value, contact.owner_id or "", "|".join(contact.tags),
            "|".join(c.name for c in contact.companies),
            *(_cell(contact.custom.get(f.key)) for f in fields),
            contact.created_at.isoformat(), contact.updated_at.isoformat() if contact.updated_at else ""]


def _cell(value: Any) -> str:
    """A custom field's value as an import reads it back (domain.fields.parse_text_value)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "|".join(str(v) for v in value)
    return str(value)


def _safe(cell: str) -> str:
    """A cell a spreadsheet would run as a formula is kept as text (OWASP CSV injection);
    phone numbers and signed numbers stay as they are."""
    return "'" + cell if _FORMULA.match(cell) else cell

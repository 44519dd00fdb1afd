"""Imports' SQL: jobs, staged rows, the error report, and the set-based writes of a batch.

A batch writes its contacts, identities and company links with COPY and one statement per
table, never one statement per row. Every query is scoped by workspace or by a job id that
was read under the caller's workspace.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from crm_contacts.domain.imports import ImportJob, JobStatus, OnDuplicate, RowError
from crm_contacts.domain.model import Company
from crmkit.ids import uuid7

_JOB = ("id, workspace_id, created_by, status, mapping::text AS mapping, on_duplicate, region, columns,"
        " total_rows, position, last_row, created, updated, skipped, failed, error_rows, file_bytes,"
        " error, created_at, started_at, finished_at")


def _job(r: asyncpg.Record) -> ImportJob:
    return ImportJob(
        id=r["id"], workspace_id=r["workspace_id"], created_by=r["created_by"], status=JobStatus(r["status"]),
        mapping=json.loads(r["mapping"]), on_duplicate=OnDuplicate(r["on_duplicate"]), region=r["region"],
        columns=tuple(r["columns"]), total_rows=r["total_rows"], position=r["position"],
        last_row=r["last_row"], created=r["created"], updated=r["updated"], skipped=r["skipped"],
        failed=r["failed"], error_rows=r["error_rows"], file_bytes=r["file_bytes"], error=r["error"],
        created_at=r["created_at"], started_at=r["started_at"], finished_at=r["finished_at"],
    )


# -- jobs --------------------------------------------------------------------------------------

async def insert_job(conn: asyncpg.Connection, job_id: UUID, workspace_id: str, created_by: str,
                     mapping: dict[str, str], on_duplicate: OnDuplicate, region: str | None) -> ImportJob:
    row = await conn.fetchrow(
        "INSERT INTO import_jobs (id, workspace_id, created_by, status, mapping, on_duplicate, region)"  # noqa: S608
        f" VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) RETURNING {_JOB}",
        job_id, workspace_id, created_by, JobStatus.AWAITING_UPLOAD.value, json.dumps(mapping),
        on_duplicate.value, region,
    )
    return _job(row)


async def get_job(conn: asyncpg.Connection, workspace_id: str, job_id: UUID, *,
                  for_update: bool = False) -> ImportJob | None:
    row = await conn.fetchrow(
        f"SELECT {_JOB} FROM import_jobs WHERE workspace_id = $1 AND id = $2"  # noqa: S608
        f"{' FOR UPDATE' if for_update else ''}", workspace_id, job_id,
    )
    return None if row is None else _job(row)


async def jobs_page(conn: asyncpg.Connection, workspace_id: str, after: tuple[datetime, UUID] | None,
                    limit: int) -> list[ImportJob]:
    """Newest first."""
    keyset = " AND (created_at, id) < ($3, $4)" if after else ""
    rows = await conn.fetch(
        f"SELECT {_JOB} FROM import_jobs WHERE workspace_id = $1{keyset}"  # noqa: S608
        " ORDER BY created_at DESC, id DESC LIMIT $2",
        workspace_id, limit, *(after or ()),
    )
    return [_job(r) for r in rows]


async def mark_queued(conn: asyncpg.Connection, job_id: UUID, columns: Sequence[str], total_rows: int,
                      file_bytes: int) -> ImportJob:
    row = await conn.fetchrow(
        "UPDATE import_jobs SET status = 'queued', columns = $2, total_rows = $3, file_bytes = $4,"  # noqa: S608
        f" updated_at = now() WHERE id = $1 RETURNING {_JOB}",
        job_id, list(columns), total_rows, file_bytes,
    )
    return _job(row)


async def claim_next(conn: asyncpg.Connection) -> ImportJob | None:
    """The oldest job with rows to apply that no other transaction holds; it stays locked
    until the caller's transaction ends, so no two workers apply one batch."""
    row = await conn.fetchrow(
        f"SELECT {_JOB} FROM import_jobs WHERE status IN ('queued', 'running')"  # noqa: S608
        " ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    return None if row is None else _job(row)


async def advance(conn: asyncpg.Connection, job_id: UUID, *, last_row: int, rows: int, created: int,
                  updated: int, skipped: int, failed: int, error_rows: int, done: bool) -> None:
    """Move the job past a batch, and drop the batch's staged rows."""
    await conn.execute(
        "UPDATE import_jobs SET status = $2, started_at = COALESCE(started_at, now()), last_row = $3,"
        " position = position + $4, created = created + $5, updated = updated + $6,"
        " skipped = skipped + $7, failed = failed + $8, error_rows = error_rows + $9,"
        " finished_at = CASE WHEN $10 THEN now() END, updated_at = now() WHERE id = $1",
        job_id, (JobStatus.DONE if done else JobStatus.RUNNING).value, last_row, rows, created, updated,
        skipped, failed, error_rows, done,
    )
    await conn.execute("DELETE FROM import_rows WHERE job_id = $1 AND row_no <= $2", job_id, last_row)


async def finish(conn: asyncpg.Connection, job_id: UUID, status: JobStatus, error: str | None) -> None:
    """End a job early (cancelled, failed); its staged rows are dropped."""
    await conn.execute(
        "UPDATE import_jobs SET status = $2, error = $3, finished_at = now(), updated_at = now()"
        " WHERE id = $1", job_id, status.value, error,
    )
    await conn.execute("DELETE FROM import_rows WHERE job_id = $1", job_id)


# -- staged rows and the error report ----------------------------------------------------------

async def stage_rows(conn: asyncpg.Connection, job_id: UUID, rows: Sequence[tuple[int, list[str]]]) -> None:
    await conn.copy_records_to_table(
        "import_rows", columns=("job_id", "row_no", "data"),
        records=[(job_id, row_no, cells) for row_no, cells in rows],
    )


async def next_rows(conn: asyncpg.Connection, job_id: UUID, after_row: int, limit: int
                    ) -> list[tuple[int, list[str]]]:
    rows = await conn.fetch(
        "SELECT row_no, data FROM import_rows WHERE job_id = $1 AND row_no > $2 ORDER BY row_no LIMIT $3",
        job_id, after_row, limit,
    )
    return [(r["row_no"], r["data"]) for r in rows]


async def add_errors(conn: asyncpg.Connection, job_id: UUID, errors: Sequence[RowError]) -> None:
    if errors:
        await conn.copy_records_to_table(
            "import_errors", columns=("job_id", "row_no", "field", "message"),
            records=[(job_id, e.row_no, e.field, e.message) for e in errors],
        )


async def errors_page(conn: asyncpg.Connection, job_id: UUID, after: tuple[int, str] | None, limit: int
                      ) -> list[RowError]:
    keyset = " AND (row_no, field) > ($3, $4)" if after else ""
    rows = await conn.fetch(
        f"SELECT row_no, field, message FROM import_errors WHERE job_id = $1{keyset}"  # noqa: S608
        " ORDER BY row_no, field LIMIT $2", job_id, limit, *(after or ()),
    )
    return [RowError(r["row_no"], r["field"], r["message"]) for r in rows]


# -- a batch's writes --------------------------------------------------------------------------

async def find_or_create_companies(conn: asyncpg.Connection, workspace_id: str, names: Sequence[str],
                                   now: datetime) -> tuple[dict[str, tuple[UUID, str]], list[Company]]:
    """Each name's company, matched case-insensitively (the oldest when several match), and
    the companies made for names that had none. Creation is serialised per workspace so that
    two imports do not both create one name."""

    async def lookup() -> dict[str, tuple[UUID, str]]:
        rows = await conn.fetch(
            "SELECT w.name AS wanted, c.id, c.name FROM unnest($2::text[]) AS w(name)"
            " CROSS JOIN LATERAL (SELECT id, name FROM companies c WHERE c.workspace_id = $1"
            "  AND lower(c.name) = lower(w.name) ORDER BY created_at, id LIMIT 1) c",
            workspace_id, list(names),
        )
        return {r["wanted"]: (r["id"], r["name"]) for r in rows}

    if not names:
        return {}, []
    found = await lookup()
    if len(found) == len(names):
        return found, []
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('crm.import.companies:' || $1))",
                       workspace_id)
    found = await lookup()
    made: dict[str, Company] = {}
    for name in names:
        if name not in found and name.lower() not in made:
            made[name.lower()] = Company(uuid7(), workspace_id, name, (), None, None, {}, 1, now, now)
    await conn.copy_records_to_table(
        "companies", columns=("id", "workspace_id", "name", "created_at", "updated_at"),
        records=[(c.id, workspace_id, c.name, now, now) for c in made.values()],
    )
    for name in names:
        if name not in found:
            company = made[name.lower()]
            found[name] = (company.id, company.name)
    return found, list(made.values())


# The columns a batch writes on a contact row.
CONTACT_ROW = ("id", "workspace_id", "display_name", "first_name", "last_name", "owner_id",
               "lifecycle_stage", "search_text", "tags", "custom", "created_at", "updated_at")


async def insert_contacts(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """``rows`` in CONTACT_ROW order, ``custom`` as JSON text."""
    if rows:
        await conn.copy_records_to_table("contacts", columns=CONTACT_ROW, records=rows)


async def update_contacts(conn: asyncpg.Connection, workspace_id: str, rows: Sequence[tuple[Any, ...]]
                          ) -> None:
    """Write each row's fields (CONTACT_ROW without workspace and times; tags and custom as
    JSON text) and move its version on. The search text comes with the row
    (store.contacts.search_text), so no row is written twice."""
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    await conn.execute(
        "UPDATE contacts c SET display_name = u.display_name, first_name = u.first_name,"
        " last_name = u.last_name, owner_id = u.owner_id, lifecycle_stage = u.lifecycle_stage,"
        " search_text = u.search_text, tags = ARRAY(SELECT jsonb_array_elements_text(u.tags)),"
        " custom = u.custom, version = c.version + 1, updated_at = now()"
        " FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],"
        "  $9::jsonb[], $10::jsonb[]) AS u(id, display_name, first_name, last_name, owner_id,"
        "  lifecycle_stage, search_text, tags, custom)"
        " WHERE c.workspace_id = $1 AND c.id = u.id",
        workspace_id, *(list(c) for c in columns),
    )


async def insert_identities(conn: asyncpg.Connection, workspace_id: str,
                            rows: Sequence[tuple[str, str, UUID]]) -> None:
    """(kind, value, contact id) rows. One another writer claimed since the batch looked fails
    the whole batch (UniqueViolationError); its retry sees the new owner."""
    if rows:
        await conn.copy_records_to_table(
            "identities", columns=("workspace_id", "kind", "value", "contact_id"),
            records=[(workspace_id, kind, value, contact_id) for kind, value, contact_id in rows],
        )


async def link_companies(conn: asyncpg.Connection, workspace_id: str, links: Sequence[tuple[UUID, UUID]]
                         ) -> None:
    """(contact id, company id) links; existing links stay as they are."""
    if links:
        contacts, companies = zip(*links, strict=True)
        await conn.execute(
            "INSERT INTO contact_companies (workspace_id, contact_id, company_id)"
            " SELECT $1, * FROM unnest($2::uuid[], $3::uuid[]) ON CONFLICT DO NOTHING",
            workspace_id, list(contacts), list(companies),
        )


# -- export ------------------------------------------------------------------------------------

async def segment_exists(conn: asyncpg.Connection, workspace_id: str, segment_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM segments WHERE workspace_id = $1 AND id = $2",
                                    workspace_id, segment_id))


async def export_page(conn: asyncpg.Connection, workspace_id: str, *, lifecycle_stage: str | None,
                      owner_id: str | None, tag: str | None, segment_id: UUID | None,
                      after: tuple[datetime, UUID] | None, limit: int) -> list[tuple[UUID, datetime]]:
    """The next live contacts (not merged away, not erased) oldest first, as (id, created_at)."""
    clauses = ["c.workspace_id = $1", "c.merged_into IS NULL", "c.erased_at IS NULL"]
    params: list[Any] = [workspace_id]

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if lifecycle_stage:
        clauses.append(f"c.lifecycle_stage = {param(lifecycle_stage)}")
    if owner_id:
        clauses.append(f"c.owner_id = {param(owner_id)}")
    if tag:
        clauses.append(f"c.tags @> ARRAY[{param(tag)}]::text[]")
    if segment_id:
        clauses.append("EXISTS (SELECT 1 FROM segment_members m WHERE m.contact_id = c.id"  # noqa: S608
                       f" AND m.segment_id = {param(segment_id)})")
    if after:
        clauses.append(f"(c.created_at, c.id) > ({param(after[0])}, {param(after[1])})")
    rows = await conn.fetch(
        # Only code-defined SQL is joined here; every value is a parameter.
        f"SELECT c.id, c.created_at FROM contacts c WHERE {' AND '.join(clauses)}"  # noqa: S608
        f" ORDER BY c.created_at, c.id LIMIT {param(limit)}", *params,
    )
    return [(r["id"], r["created_at"]) for r in rows]

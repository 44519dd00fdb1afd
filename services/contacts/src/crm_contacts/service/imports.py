"""CSV imports: a job with its mapping, its file staged as it streams in, and the worker that
applies it in batches (docs/import-export.md).

The upload is staged in one transaction: the whole file or nothing. Each batch is one unit of
work that also moves the job's position and counters, so a crash resumes at the last committed
batch with no row applied twice and none lost. The batch's transaction holds the job's row
(FOR UPDATE SKIP LOCKED), so no two workers, in this process or another replica, apply one batch.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from crm_contacts.domain.errors import Conflict, InvalidFields, NotFound
from crm_contacts.domain.fields import Entity
from crm_contacts.domain.imports import (
    FINISHED,
    CsvStream,
    FileTooLarge,
    ImportJob,
    InvalidCsv,
    JobStatus,
    OnDuplicate,
    ParsedRow,
    RowReader,
    check_mapping,
    mapped_indices,
    read_rows,
)
from crm_contacts.service.import_batch import apply_batch
from crm_contacts.store import fields as field_store
from crm_contacts.store import imports as store
from crmkit.fields import FieldDefinition
from crmkit.ids import uuid7
from crmkit.pagination import decode_cursor, encode_cursor
from crmkit.postgres import PgDatabase, PgUnitOfWork

log = logging.getLogger(__name__)

MAX_PAGE = 100
STAGE_CHUNK = 5000  # staged rows per COPY
ERRORS_PAGE = 5000
MAX_ATTEMPTS = 3  # a batch that fails this often fails its job


@dataclass(frozen=True)
class JobPage:
    items: list[ImportJob]
    next_cursor: str | None


class BatchFailed(Exception):
    def __init__(self, job_id: UUID, last_row: int) -> None:
        super().__init__(f"a batch of import {job_id} after row {last_row} failed")
        self.job_id = job_id
        self.last_row = last_row


class ImportsService:
    def __init__(self, db: PgDatabase, *, max_bytes: int, batch_size: int,
                 phone_region: str | None = None) -> None:
        self.db = db
        self.max_bytes = max_bytes
        self.batch_size = batch_size
        self.phone_region = phone_region
        self.queued = asyncio.Event()  # set when this process queues a job: the worker wakes
        self._ahead: _Ahead | None = None

    # -- jobs ----------------------------------------------------------------------------------

    async def create_job(self, workspace_id: str, actor: str, mapping: dict[str, str],
                         on_duplicate: OnDuplicate, region: str | None) -> ImportJob:
        """A job awaiting its file; InvalidFields names each mapped column whose target is unknown."""
        async with self.db.unit_of_work() as uow:
            definitions = await field_store.definitions(uow.conn, workspace_id, Entity.CONTACT)
            errors = check_mapping(mapping, definitions)
            if errors:
                raise InvalidFields(errors)
            return await store.insert_job(uow.conn, uuid7(), workspace_id, actor, mapping, on_duplicate,
                                          region.upper() if region else None)

    async def get(self, workspace_id: str, job_id: UUID) -> ImportJob:
        async with self.db.pool.acquire() as conn:
            job = await store.get_job(conn, workspace_id, job_id)
        if job is None:
            raise NotFound("import")
        return job

    async def list_jobs(self, workspace_id: str, cursor: str | None, limit: int) -> JobPage:
        after = None
        if cursor:
            stamp, job_id = decode_cursor("imports", cursor, 2)
            after = (datetime.fromisoformat(stamp), UUID(job_id))
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            jobs = await store.jobs_page(conn, workspace_id, after, limit + 1)
        page = jobs[:limit]
        next_cursor = None
        if len(jobs) > limit:
            next_cursor = encode_cursor("imports", [page[-1].created_at.isoformat(), str(page[-1].id)])
        return JobPage(page, next_cursor)

    async def cancel(self, workspace_id: str, job_id: UUID) -> ImportJob:
        """Stop a job that has not finished; the batches already applied stay."""
        async with self.db.unit_of_work() as uow:
            job = await store.get_job(uow.conn, workspace_id, job_id, for_update=True)
            if job is None:
                raise NotFound("import")
            if job.status in FINISHED:
                raise Conflict(f"the import is already {job.status.value}")
            await store.finish(uow.conn, job_id, JobStatus.CANCELLED, None)
            cancelled = await store.get_job(uow.conn, workspace_id, job_id)
        assert cancelled is not None
        return cancelled

    # -- the file ------------------------------------------------------------------------------

    async def upload(self, workspace_id: str, job_id: UUID, chunks: AsyncIterable[bytes],
                     length: int | None = None) -> ImportJob:
        """Stage the CSV as it arrives, then queue the job. FileTooLarge past the limit,
        InvalidCsv for a file that cannot be read, Conflict when the job already has its file;
        in every such case nothing is staged."""
        if length is not None and length > self.max_bytes:
            raise FileTooLarge(self.max_bytes)
        async with self.db.unit_of_work() as uow:
            job = await store.get_job(uow.conn, workspace_id, job_id, for_update=True)
            if job is None:
                raise NotFound("import")
            if job.status is not JobStatus.AWAITING_UPLOAD:
                raise Conflict(f"the import already has its file (it is {job.status.value})")
            definitions = await field_store.definitions(uow.conn, workspace_id, Entity.CONTACT)
            errors = check_mapping(job.mapping, definitions)  # a field may have gone since
            if errors:
                raise InvalidFields(errors)
            stager = _Stager(uow.conn, job)
            reader = CsvStream()
            size = 0
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_bytes:
                    raise FileTooLarge(self.max_bytes)
                await stager.add(reader.feed(chunk), reader.records)
            await stager.add(reader.close(), reader.records)
            await stager.flush()
            if stager.indices is None:
                raise InvalidCsv("the file is empty: its first row names the columns")
            queued = await store.mark_queued(uow.conn, job_id, list(job.mapping), stager.total, size)
        self.queued.set()
        return queued

    # -- the error report ----------------------------------------------------------------------

    async def error_report(self, workspace_id: str, job_id: UUID) -> AsyncIterator[bytes]:
        """The rows that failed or were skipped for a reason, as CSV (row, field, message) in
        row order, read page by page."""
        await self.get(workspace_id, job_id)
        return self._error_lines(job_id)

    async def _error_lines(self, job_id: UUID) -> AsyncIterator[bytes]:
        yield b"row,field,message\r\n"
        after: tuple[int, str] | None = None
        while True:
            async with self.db.pool.acquire() as conn:
                page = await store.errors_page(conn, job_id, after, ERRORS_PAGE)
            if not page:
                return
            out = io.StringIO()
            csv.writer(out).writerows((e.row_no, e.field, e.message) for e in page)
            yield out.getvalue().encode()
            after = (page[-1].row_no, page[-1].field)

    # -- applying ------------------------------------------------------------------------------

    async def apply_next_batch(self) -> bool:
        """Apply the next batch of the oldest job that needs one; False when none does.
        BatchFailed when the batch's transaction failed (nothing of it was written)."""
        claimed: ImportJob | None = None
        try:
            async with self.db.unit_of_work() as uow:
                claimed = await store.claim_next(uow.conn)
                if claimed is None:
                    return False
                await self._apply(uow, claimed)
        except Exception as exc:
            self._ahead = None
            if claimed is None:
                raise
            raise BatchFailed(claimed.id, claimed.last_row) from exc
        return True

    async def _apply(self, uow: PgUnitOfWork, job: ImportJob) -> None:
        """The batch after ``job.last_row``. The batch after it is read and validated (in a
        thread) while this one is written; the next call uses it if it is still next."""
        conn = uow.conn
        definitions = await field_store.definitions(conn, job.workspace_id, Entity.CONTACT)
        # The staged cells are in the order of job.columns (jsonb does not keep the mapping's order).
        mapping = {column: job.mapping[column] for column in job.columns}
        reader = RowReader(mapping, definitions, job.region or self.phone_region)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.after == (job.id, job.last_row) and ahead.definitions == definitions:
            rows, parsed = ahead.rows, ahead.parsed
        else:
            rows = await store.next_rows(conn, job.id, job.last_row, self.batch_size)
            parsed = await asyncio.to_thread(read_rows, reader, rows)
        done = len(rows) < self.batch_size
        following = [] if done else await store.next_rows(conn, job.id, rows[-1][0], self.batch_size)
        reading = asyncio.ensure_future(asyncio.to_thread(read_rows, reader, following))
        try:
            plan = await apply_batch(uow, job, parsed)
            await store.advance(
                conn, job.id, last_row=rows[-1][0] if rows else job.last_row, rows=len(rows),
                created=plan.created, updated=plan.updated, skipped=plan.skipped, failed=plan.failed,
                error_rows=plan.error_rows, done=done,
            )
        except BaseException:
            await asyncio.gather(reading, return_exceptions=True)
            raise
        if following:
            self._ahead = _Ahead((job.id, rows[-1][0]), definitions, following, await reading)

    async def fail(self, job_id: UUID, error: str) -> None:
        async with self.db.unit_of_work() as uow:
            await store.finish(uow.conn, job_id, JobStatus.FAILED, error)


@dataclass(frozen=True)
class _Ahead:
    """The next batch of a job, read and validated while the one before it was written."""

    after: tuple[UUID, int]  # (job, the row it follows)
    definitions: dict[str, FieldDefinition]
    rows: list[tuple[int, list[str]]]
    parsed: list[ParsedRow]


class _Stager:
    """The upload's rows on their way to import_rows: the header row finds the mapped
    columns; each later row keeps only their cells; COPY every STAGE_CHUNK rows."""

    def __init__(self, conn: asyncpg.Connection, job: ImportJob) -> None:
        self.conn = conn
        self.job = job
        self.indices: list[int] | None = None
        self.rows: list[tuple[int, list[str]]] = []
        self.total = 0

    async def add(self, records: list[list[str]], read: int) -> None:
        first = read - len(records) + 1  # the row number of records[0]; the header is row 1
        for offset, record in enumerate(records):
            if self.indices is None:
                self.indices = mapped_indices(self.job.mapping, record)
                continue
            if not any(cell.strip() for cell in record):
                continue  # a blank line
            width = len(record)
            self.rows.append((first + offset, [record[i] if i < width else "" for i in self.indices]))
        if len(self.rows) >= STAGE_CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if self.rows:
            await store.stage_rows(self.conn, self.job.id, self.rows)
            self.total += len(self.rows)
            self.rows = []


class ImportWorker:
    """Applies queued imports batch after batch; waits for a wake-up or a poll when idle. A
    batch that keeps failing fails its job rather than block the queue."""

    def __init__(self, service: ImportsService, poll_seconds: float = 1.0) -> None:
        self.service = service
        self.poll_seconds = poll_seconds
        self.stopping = False
        self._failures: dict[tuple[UUID, int], int] = {}

    async def run(self) -> None:
        while not self.stopping:
            self.service.queued.clear()  # before looking: a job queued meanwhile is not missed
            try:
                worked = await self.service.apply_next_batch()
            except BatchFailed as exc:
                await self._failed(exc)
                continue
            except Exception as exc:  # the database is away: keep the worker alive, try again
                log.warning("import worker cannot claim a job", extra={"error": type(exc).__name__})
                await asyncio.sleep(self.poll_seconds)
                continue
            if not worked:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self.service.queued.wait(), self.poll_seconds)

    def stop(self) -> None:
        self.stopping = True
        self.service.queued.set()

    async def _failed(self, exc: BatchFailed) -> None:
        cause = exc.__cause__
        key = (exc.job_id, exc.last_row)
        attempts = self._failures[key] = self._failures.get(key, 0) + 1
        # A database error's text can quote row values (personal data): log its type only.
        log.error("import batch failed", exc_info=not isinstance(cause, asyncpg.PostgresError),
                  extra={"job_id": str(exc.job_id), "after_row": exc.last_row, "attempt": attempts,
                         "error": type(cause).__name__})
        if attempts < MAX_ATTEMPTS:
            await asyncio.sleep(min(attempts, 5) * 0.2)
            return
        try:
            await self.service.fail(exc.job_id, f"the rows after row {exc.last_row} could not be"
                                    f" applied ({type(cause).__name__}); the rows before them were imported")
            del self._failures[key]
        except Exception as error:  # tried again on the next failure
            log.warning("import job cannot be marked failed", extra={"error": type(error).__name__})


@asynccontextmanager
async def import_worker(service: ImportsService, poll_seconds: float, grace_seconds: float
                        ) -> AsyncIterator[ImportWorker]:
    """Run the worker for the lifespan; on exit, let the batch in hand commit (up to the grace
    period), else cancel it: its transaction rolls back and a later run resumes there."""
    worker = ImportWorker(service, poll_seconds)
    task = asyncio.create_task(worker.run(), name="imports worker")
    try:
        yield worker
    finally:
        worker.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace_seconds)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

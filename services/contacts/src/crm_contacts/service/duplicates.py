"""Duplicate scans' use cases: start a scan of a workspace's contacts, follow it, and page
through the candidate pairs it found (docs/duplicates.md).

A scan runs as a background task of the process that accepted it, one scan at a time per
process. The reading streams from PostgreSQL while the pairing (pure Python and rapidfuzz,
CPU-bound) runs in a worker thread, so the event loop keeps serving requests. While a scan is
queued or running its process moves the scan's heartbeat every HEARTBEAT; any process fails a
scan whose heartbeat is older than STALE_AFTER (its process died): at start, every HEARTBEAT,
and whenever the workspace starts a scan or reads one. A failed scan is not resumed; the
workspace starts a new one. Stopping the service fails its scans as interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from crm_contacts.domain.duplicates import (
    MAX_BLOCK,
    Candidate,
    CandidatePosition,
    DuplicateScan,
    Pairing,
    PairingResult,
)
from crm_contacts.store.duplicates import DuplicatesStore, candidate_rows
from crmkit.ids import uuid7
from crmkit.pagination import InvalidCursor, decode_cursor, encode_cursor
from crmkit.postgres import PgDatabase

log = logging.getLogger(__name__)

MAX_PAGE = 100
BATCH = 20_000  # contacts read per round trip
HEARTBEAT = timedelta(seconds=10)
STALE_AFTER = timedelta(seconds=60)
_CURSOR = "duplicate-candidates"


@dataclass(frozen=True)
class CandidatePage:
    candidates: list[Candidate]
    next_cursor: str | None


class DuplicatesService:
    def __init__(self, db: PgDatabase, *, max_block: int = MAX_BLOCK, batch_size: int = BATCH) -> None:
        self.db = db
        self.max_block = max_block
        self.batch_size = batch_size
        self._running: dict[UUID, asyncio.Task[None]] = {}
        self._one_at_a_time = asyncio.Semaphore(1)
        self._stopping = threading.Event()  # seen by the pairing thread
        self._keeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Fail the scans that a stopped process left behind, then keep heartbeats moving."""
        await self._keep()
        self._keeper = asyncio.create_task(self._keep_forever(), name="duplicate scans keeper")

    async def close(self) -> None:
        """Stop the scans of this process (each is marked failed) and the keeper."""
        self._stopping.set()
        tasks = [*self._running.values(), *([self._keeper] if self._keeper else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> DuplicatesService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start_scan(self, workspace_id: str, requested_by: str) -> DuplicateScan:
        """A new scan, queued and started in the background; the workspace's queued or running
        scan instead when it has one."""
        scan_id = uuid7()
        async with self.db.pool.acquire() as conn:
            store = DuplicatesStore(conn)
            await store.fail_stale(STALE_AFTER, workspace_id)
            while not await store.create_scan(scan_id, workspace_id, requested_by):
                active = await store.active(workspace_id)
                if active is not None:
                    return active
                # it ended in between: try again
            scan = await store.get(workspace_id, scan_id)
        assert scan is not None
        task = asyncio.create_task(self._run(scan_id, workspace_id), name=f"duplicate scan {scan_id}")
        self._running[scan_id] = task
        task.add_done_callback(lambda _: self._running.pop(scan_id, None))
        return scan

    async def wait(self, scan_id: UUID) -> None:
        """Until this process's scan ``scan_id`` ends (at once when it is not running here)."""
        task = self._running.get(scan_id)
        if task is not None:
            await asyncio.shield(task)

    async def get_scan(self, workspace_id: str, scan_id: UUID) -> DuplicateScan | None:
        async with self.db.pool.acquire() as conn:
            store = DuplicatesStore(conn)
            await store.fail_stale(STALE_AFTER, workspace_id)
            return await store.get(workspace_id, scan_id)

    async def candidates(self, workspace_id: str, scan_id: UUID, cursor: str | None, limit: int
                         ) -> CandidatePage | None:
        """The scan's pairs, highest score first; None when the scan is not the workspace's.
        Raises crmkit.pagination.InvalidCursor."""
        after = _position(cursor) if cursor else None
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            store = DuplicatesStore(conn)
            if await store.get(workspace_id, scan_id) is None:
                return None
            found = await store.candidates(scan_id, after, limit + 1)
        page = found[:limit]
        last = page[-1] if len(found) > limit else None
        next_cursor = (encode_cursor(_CURSOR, [last.score, str(last.contact_a), str(last.contact_b)])
                       if last else None)
        return CandidatePage(page, next_cursor)

    # --- the scan itself --------------------------------------------------------------------

    async def _run(self, scan_id: UUID, workspace_id: str) -> None:
        try:
            async with self._one_at_a_time:
                async with self.db.pool.acquire() as conn:
                    await DuplicatesStore(conn).mark_running(scan_id)
                log.info("duplicate scan started", extra={"scan_id": str(scan_id)})
                with _fewer_collections():
                    result = await self._pair(workspace_id)
                rows = await asyncio.to_thread(candidate_rows, scan_id, result.pairs)
                async with self.db.pool.acquire() as conn, conn.transaction():
                    store = DuplicatesStore(conn)
                    await store.save_candidates(rows)
                    await store.finish(scan_id, result)
                    await store.drop_earlier_candidates(workspace_id, scan_id)
            log.info("duplicate scan done", extra={
                "scan_id": str(scan_id), "contacts": result.contacts, "candidates": len(result.pairs),
                "blocks_skipped": result.blocks_skipped})
        except asyncio.CancelledError:
            await self._fail(scan_id, "interrupted: the service stopped")
            raise
        except Exception as exc:
            log.exception("duplicate scan failed", extra={"scan_id": str(scan_id)})
            await self._fail(scan_id, f"failed: {type(exc).__name__}")

    async def _pair(self, workspace_id: str) -> PairingResult:
        """Read the contacts in batches, each handed to the pairing thread while the next one
        is fetched, then pair them all in the thread."""
        pairing = Pairing(self.max_block, self._stopping.is_set)
        async with self.db.pool.acquire() as conn:
            batches = DuplicatesStore(conn).contact_batches(workspace_id, self.batch_size)
            async with contextlib.aclosing(batches):
                fetch: asyncio.Future[Sequence[Any] | None] = asyncio.ensure_future(anext(batches, None))
                try:
                    while (rows := await fetch) is not None:
                        fetch = asyncio.ensure_future(anext(batches, None))
                        await asyncio.to_thread(pairing.add, rows)
                        gc.freeze()  # this batch's rows and profiles: see _fewer_collections
                finally:
                    fetch.cancel()
                    await asyncio.gather(fetch, return_exceptions=True)
        return await asyncio.to_thread(pairing.run)

    async def _fail(self, scan_id: UUID, error: str) -> None:
        try:
            async with self.db.pool.acquire() as conn:
                await DuplicatesStore(conn).fail(scan_id, error)
        except Exception:
            log.exception("could not mark a duplicate scan failed", extra={"scan_id": str(scan_id)})

    async def _keep(self) -> None:
        async with self.db.pool.acquire() as conn:
            store = DuplicatesStore(conn)
            if self._running:
                await store.heartbeat(list(self._running))
            failed = await store.fail_stale(STALE_AFTER)
        if failed:
            log.warning("duplicate scans interrupted by a stopped process failed", extra={"scans": failed})

    async def _keep_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT.total_seconds())
            try:
                await self._keep()
            except Exception:
                log.exception("duplicate scans keeper failed; trying again")


def _position(cursor: str) -> CandidatePosition:
    score, a, b = decode_cursor(_CURSOR, cursor, 3)
    try:
        if not isinstance(score, int) or not 0 <= score <= 100:
            raise ValueError(score)
        return CandidatePosition(score, UUID(str(a)), UUID(str(b)))
    except ValueError as exc:
        raise InvalidCursor() from exc


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """A scan makes millions of small objects that live until it ends, without cycles. The
    cyclic collector would traverse them all again and again as they pile up, which made
    reading and pairing 1M contacts four times slower. So the scan freezes what it has made
    after each batch (gc.freeze: the collector leaves those objects alone) and collects less
    often; at the end they are unfrozen, and freed as usual when the scan lets them go."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 100_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()

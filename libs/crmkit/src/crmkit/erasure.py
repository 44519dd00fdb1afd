"""Confirming a person's erasure to contacts, for services on PostgreSQL and on MongoDB.

When contacts erases a person it publishes ``contact.erased`` and waits for each service to
confirm (``ConfirmErasure`` over gRPC). A service erases in one transaction and, in the same
transaction, queues the confirmation here (:meth:`ErasureConfirmations.queue`); a background
task (:meth:`ErasureConfirmations.run`) sends it, retrying with growing waits while contacts
cannot be reached. So the consumer of ``crm.contacts.v1`` never waits on contacts, and a
confirmation is never lost: it is a row until contacts has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from crmkit.mongo import MongoDatabase, MongoUnitOfWork
from crmkit.postgres import PgDatabase

log = logging.getLogger(__name__)

# Tells contacts that this service has erased a person: (workspace, contact id).
Confirm = Callable[[str, str], Awaitable[None]]

MAX_BACKOFF = timedelta(minutes=10)
LEASE = timedelta(minutes=1)
BATCH = 50


def _backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failure: doubling, jittered, capped."""
    return min(timedelta(seconds=2 ** min(attempts, 10)), MAX_BACKOFF) * (0.5 + random.random())  # noqa: S311


class _Confirmations:
    """The loop both stores share: confirm what is due, then sleep until woken or idle."""

    def __init__(self, confirm: Confirm, idle_seconds: float) -> None:
        self.confirm = confirm
        self.idle_seconds = idle_seconds
        self._wake = asyncio.Event()

    def queued(self) -> None:
        """Call after the transactions that queued have committed: confirm without waiting."""
        self._wake.set()

    async def confirm_due(self) -> int:
        raise NotImplementedError

    async def run(self) -> None:
        """Confirm erasures until cancelled: right after one is queued, else every few seconds."""
        while True:
            try:
                await self.confirm_due()
            except Exception:
                log.exception("the erasure confirmations failed; trying again")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.idle_seconds)

    async def _send(self, workspace_id: str, contact_id: str, attempts: int) -> str | None:
        """Confirm one; the error's name when it failed."""
        try:
            await self.confirm(workspace_id, contact_id)
        except Exception as exc:
            log.warning("could not confirm an erasure to contacts; retrying later",
                        extra={"attempts": attempts + 1, "error": type(exc).__name__})
            return type(exc).__name__
        return None


class ErasureConfirmations(_Confirmations):
    """On PostgreSQL: the table ``pending_erasure_confirmations`` (crmkit's migration)."""

    def __init__(self, db: PgDatabase, confirm: Confirm, idle_seconds: float = 5.0) -> None:
        super().__init__(confirm, idle_seconds)
        self.db = db

    async def queue(self, conn: asyncpg.Connection, workspace_id: str, contact_id: UUID) -> None:
        """Queue the confirmation in the caller's transaction (the one that erases); the
        background task is woken when it is done with it (:meth:`queued`)."""
        await conn.execute(
            "INSERT INTO pending_erasure_confirmations (workspace_id, contact_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING", workspace_id, contact_id)

    async def confirm_due(self) -> int:
        """Confirm the erasures whose turn it is; one that fails waits longer each time (up to
        ``MAX_BACKOFF``). Each is leased first, so that replicas share the work and no
        transaction stays open while contacts is called. Returns how many were confirmed."""
        async with self.db.pool.acquire() as conn:
            due = await conn.fetch(
                "UPDATE pending_erasure_confirmations SET next_attempt_at = now() + $2"
                " WHERE (workspace_id, contact_id) IN (SELECT workspace_id, contact_id"
                " FROM pending_erasure_confirmations WHERE next_attempt_at <= now() ORDER BY next_attempt_at"
                " LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING workspace_id, contact_id, attempts",
                BATCH, LEASE)
            confirmed = 0
            for row in due:
                key = (row["workspace_id"], row["contact_id"])
                error = await self._send(row["workspace_id"], str(row["contact_id"]), row["attempts"])
                if error is not None:
                    await conn.execute(
                        "UPDATE pending_erasure_confirmations SET attempts = attempts + 1, last_error = $3,"
                        " next_attempt_at = now() + $4 WHERE workspace_id = $1 AND contact_id = $2",
                        *key, error, _backoff(row["attempts"]))
                    continue
                await conn.execute("DELETE FROM pending_erasure_confirmations"
                                   " WHERE workspace_id = $1 AND contact_id = $2", *key)
                confirmed += 1
        return confirmed


class MongoErasureConfirmations(_Confirmations):
    """On MongoDB: the collection ``pending_erasure_confirmations``, one document per person."""

    def __init__(self, db: MongoDatabase, confirm: Confirm, idle_seconds: float = 5.0) -> None:
        super().__init__(confirm, idle_seconds)
        self.db = db

    @staticmethod
    async def queue(uow: MongoUnitOfWork, workspace_id: str, contact_id: str) -> None:
        """Queue the confirmation in the caller's transaction (the one that erases)."""
        now = datetime.now(UTC)
        await uow.db.pending_erasure_confirmations.update_one(
            {"_id": f"{workspace_id}:{contact_id}"},
            {"$setOnInsert": {"workspace_id": workspace_id, "contact_id": contact_id, "erased_at": now,
                              "attempts": 0, "next_attempt_at": now}},
            upsert=True, session=uow.session)

    async def confirm_due(self) -> int:
        """As the PostgreSQL one: each due confirmation leased, sent, then deleted or put back
        with a longer wait."""
        collection = self.db.db.pending_erasure_confirmations
        confirmed = 0
        for _ in range(BATCH):
            now = datetime.now(UTC)
            doc: dict[str, Any] | None = await collection.find_one_and_update(
                {"next_attempt_at": {"$lte": now}}, {"$set": {"next_attempt_at": now + LEASE}},
                sort=[("next_attempt_at", 1)])
            if doc is None:
                break
            error = await self._send(doc["workspace_id"], doc["contact_id"], doc["attempts"])
            if error is not None:
                later = datetime.now(UTC) + _backoff(doc["attempts"])
                await collection.update_one({"_id": doc["_id"]}, {
                    "$inc": {"attempts": 1}, "$set": {"last_error": error, "next_attempt_at": later}})
                continue
            await collection.delete_one({"_id": doc["_id"]})
            confirmed += 1
        return confirmed

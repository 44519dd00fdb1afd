"""A person's erasure (GDPR art. 17): what ticketing holds of them is anonymised, then
confirmed to contacts.

Tickets stay, so that volumes, response times and SLA compliance still add up, but without
anything that says who the person was or what was written: the subject, the identity replies
went to, every message's text and attachment names (theirs, the agents' replies to them, the
notes about them), the thread keys (Message-IDs name mail hosts and sometimes people) and
survey comments.

The confirmation is queued in the transaction that anonymises and sent by a background task,
retried with backoff: contacts being unreachable never holds up the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from uuid import UUID

from crm_ticketing.store.tickets import TicketsStore
from crmkit.kafka import Delivered
from crmkit.postgres import PgDatabase, PgUnitOfWork

log = logging.getLogger(__name__)

# Tells contacts that this service has erased a person: (workspace, contact id).
Confirm = Callable[[str, str], Awaitable[None]]
# Erases what another part of ticketing holds of the tickets' people, in the same transaction.
Eraser = Callable[[PgUnitOfWork, str, Sequence[UUID]], Awaitable[None]]

MAX_BACKOFF = timedelta(minutes=10)
BATCH = 50


class Erasure:
    def __init__(self, db: PgDatabase, confirm: Confirm, erasers: Sequence[Eraser] = (),
                 idle_seconds: float = 5.0) -> None:
        self.db = db
        self.confirm = confirm
        self.erasers = list(erasers)
        self.idle_seconds = idle_seconds
        self._wake = asyncio.Event()

    async def erase_contacts(self, items: Sequence[Delivered[UUID]]) -> int:
        """Anonymise each erased person's tickets and queue the confirmation to contacts, each
        person in one transaction. Erasing twice changes nothing. Returns the tickets
        anonymised."""
        erased = 0
        for delivered in items:
            workspace_id, contact_id = delivered.workspace_id, delivered.item
            async with self.db.unit_of_work() as uow:
                tickets = await TicketsStore(uow.conn).erase_contact(workspace_id, contact_id)
                for eraser in self.erasers:
                    await eraser(uow, workspace_id, tickets)
                await uow.conn.execute(
                    "INSERT INTO erasure_confirmations (workspace_id, contact_id) VALUES ($1, $2)"
                    " ON CONFLICT DO NOTHING", workspace_id, contact_id)
            erased += len(tickets)
            log.info("anonymised an erased contact's tickets", extra={"tickets": len(tickets)})
        self._wake.set()
        return erased

    async def confirm_due(self) -> int:
        """Confirm the erasures whose turn it is; one that fails waits longer each time (up to
        ``MAX_BACKOFF``). Each is leased for a minute first, so that replicas share the work
        and no transaction stays open while contacts is called. Returns how many were
        confirmed."""
        async with self.db.pool.acquire() as conn:
            due = await conn.fetch(
                "UPDATE erasure_confirmations SET next_attempt_at = now() + interval '1 minute'"
                " WHERE (workspace_id, contact_id) IN (SELECT workspace_id, contact_id"
                " FROM erasure_confirmations WHERE next_attempt_at <= now() ORDER BY next_attempt_at"
                " LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING workspace_id, contact_id, attempts", BATCH)
            confirmed = 0
            for row in due:
                key = (row["workspace_id"], row["contact_id"])
                try:
                    await self.confirm(row["workspace_id"], str(row["contact_id"]))
                except Exception as exc:
                    wait = min(timedelta(seconds=2 ** min(row["attempts"], 10)), MAX_BACKOFF)
                    await conn.execute(
                        "UPDATE erasure_confirmations SET attempts = attempts + 1, last_error = $3,"
                        " next_attempt_at = now() + $4 WHERE workspace_id = $1 AND contact_id = $2",
                        *key, type(exc).__name__, wait * (0.5 + random.random()))  # noqa: S311 - jitter
                    log.warning("could not confirm an erasure to contacts; retrying later",
                                extra={"attempts": row["attempts"] + 1, "error": type(exc).__name__})
                    continue
                await conn.execute(
                    "DELETE FROM erasure_confirmations WHERE workspace_id = $1 AND contact_id = $2", *key)
                confirmed += 1
        return confirmed

    async def run(self) -> None:
        """Confirm erasures until cancelled: right after an erasure, else every few seconds."""
        while True:
            try:
                await self.confirm_due()
            except Exception:
                log.exception("the erasure confirmations failed; trying again")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.idle_seconds)

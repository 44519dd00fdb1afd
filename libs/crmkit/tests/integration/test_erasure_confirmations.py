"""Queued erasure confirmations against the real PostgreSQL: a confirmation survives contacts
being down, waits longer after each failure, is sent once, and never from a rolled-back
erasure."""

from __future__ import annotations

import asyncio

import pytest

from crmkit.erasure import ErasureConfirmations
from crmkit.ids import uuid7
from crmkit.postgres import PgDatabase

pytestmark = pytest.mark.integration
WS = "ws-erasure-confirmations"


class Contacts:
    """Plays contacts' ConfirmErasure: down until ``up``, recording what it was told."""

    def __init__(self) -> None:
        self.up = False
        self.told: list[tuple[str, str]] = []

    async def confirm(self, workspace_id: str, contact_id: str) -> None:
        if not self.up:
            raise ConnectionError("contacts is unreachable")
        self.told.append((workspace_id, contact_id))


async def test_a_confirmation_waits_out_contacts_being_down_and_is_sent_once(pg: PgDatabase) -> None:
    await pg.pool.execute("DELETE FROM pending_erasure_confirmations WHERE workspace_id = $1", WS)
    contacts = Contacts()
    confirmations = ErasureConfirmations(pg, contacts.confirm)
    person, other = uuid7(), uuid7()
    async with pg.unit_of_work() as uow:
        await confirmations.queue(uow.conn, WS, person)
        await confirmations.queue(uow.conn, WS, person)  # erased twice: one confirmation
    with pytest.raises(RuntimeError):
        async with pg.unit_of_work() as uow:
            await confirmations.queue(uow.conn, WS, other)
            raise RuntimeError("the erasure failed")  # rolled back: nothing to confirm

    assert await confirmations.confirm_due() == 0
    row = await pg.pool.fetchrow("SELECT attempts, last_error, next_attempt_at > now() AS later"
                                 " FROM pending_erasure_confirmations WHERE workspace_id = $1", WS)
    assert (row["attempts"], row["last_error"], row["later"]) == (1, "ConnectionError", True)
    assert await confirmations.confirm_due() == 0  # not its turn yet
    assert contacts.told == []

    contacts.up = True
    await pg.pool.execute("UPDATE pending_erasure_confirmations SET next_attempt_at = now()"
                          " WHERE workspace_id = $1", WS)
    # Two replicas at once: each confirmation is leased by one of them.
    replica = ErasureConfirmations(pg, contacts.confirm)
    sent = await asyncio.gather(confirmations.confirm_due(), replica.confirm_due())
    assert sorted(sent) == [0, 1]
    assert contacts.told == [(WS, str(person))]
    left = await pg.pool.fetchval("SELECT count(*) FROM pending_erasure_confirmations"
                                  " WHERE workspace_id = $1", WS)
    assert left == 0

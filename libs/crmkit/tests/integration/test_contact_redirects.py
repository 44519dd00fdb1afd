"""Contact redirects against the real PostgreSQL: chains stay flat, merges and writes are ordered."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest

from crmkit.ids import uuid7
from crmkit.kafka import PermanentError
from crmkit.postgres import PgDatabase
from crmkit.redirects import ContactRedirects

pytestmark = pytest.mark.integration
WS = "ws-redirects"


async def merge(pg: PgDatabase, loser: UUID, survivor: UUID, workspace: str = WS) -> UUID | None:
    async with pg.unit_of_work() as uow:
        return await ContactRedirects(uow.conn).merge(workspace, loser, survivor)


async def resolve(pg: PgDatabase, *contacts: UUID, workspace: str = WS) -> list[UUID]:
    async with pg.unit_of_work() as uow:
        found = await ContactRedirects(uow.conn).resolve([(workspace, c) for c in contacts])
    return [found[(workspace, c)] for c in contacts]


async def test_a_merged_contact_resolves_to_its_survivor_and_chains_stay_flat(pg: PgDatabase) -> None:
    a, b, c, d = uuid7(), uuid7(), uuid7(), uuid7()
    assert await merge(pg, a, b) == b
    assert await resolve(pg, a, b, d) == [b, b, d]
    assert await merge(pg, b, c) == c  # whatever pointed at b now points at c
    assert await resolve(pg, a, b, c) == [c, c, c]
    assert await merge(pg, d, a) == c  # a survivor merged away already: its own survivor
    assert await resolve(pg, d) == [c]
    assert await resolve(pg, a, workspace="ws-elsewhere") == [a]


async def test_merging_a_loser_again_moves_nothing_and_a_cycle_is_refused(pg: PgDatabase) -> None:
    a, b, c = uuid7(), uuid7(), uuid7()
    assert await merge(pg, a, b) == b
    assert await merge(pg, a, c) is None
    assert await resolve(pg, a) == [b]
    with pytest.raises(PermanentError, match="cycle"):
        await merge(pg, b, a)


async def test_a_write_for_the_loser_waits_for_its_merge_then_follows_the_redirect(pg: PgDatabase) -> None:
    loser, survivor = uuid7(), uuid7()
    async with pg.unit_of_work() as uow:
        await ContactRedirects(uow.conn).merge(WS, loser, survivor)
        late = asyncio.create_task(resolve(pg, loser))
        await asyncio.sleep(0.3)
        assert not late.done()  # the merge has not committed yet
    assert await late == [survivor]


async def test_a_merge_waits_for_a_write_for_its_loser_to_commit(pg: PgDatabase) -> None:
    loser, survivor = uuid7(), uuid7()
    async with pg.unit_of_work() as uow:
        assert await ContactRedirects(uow.conn).resolve([(WS, loser)]) == {(WS, loser): loser}
        merging = asyncio.create_task(merge(pg, loser, survivor))
        await asyncio.sleep(0.3)
        assert not merging.done()  # what this transaction writes for the loser, the merge will see
    assert await merging == survivor

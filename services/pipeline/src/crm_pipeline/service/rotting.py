"""Rotting deals: a background task that announces ``crm.pipeline.deal.rotting.v1`` for every
open deal quiet for longer than its stage's ``rotting_days``, once per rotting episode.

An episode is identified by where the quiet time counts from (the later of the deal's last
activity and its entry into the stage). The episode announced is recorded with its event in one
transaction (``deal_rotting``), so a restart or a second replica announces nothing twice; an
activity or a stage change moves that start on, and the deal may rot again later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from crm_pipeline import wire
from crm_pipeline.domain.activities import is_rotting
from crm_pipeline.store.activities import ActivitiesStore
from crmkit.postgres import PgDatabase

log = logging.getLogger(__name__)

BATCH = 200


def _now() -> datetime:
    return datetime.now(UTC)


class RottingWatch:
    def __init__(self, db: PgDatabase, interval_seconds: float = 300.0, batch: int = BATCH,
                 clock: Callable[[], datetime] = _now) -> None:
        self.db = db
        self.interval_seconds = interval_seconds
        self.batch = batch
        self.clock = clock

    async def check(self) -> int:
        """Announce every deal rotting now in an episode not announced yet, a batch per
        transaction; returns how many were announced."""
        announced = 0
        while True:
            now = self.clock()
            marked = 0
            async with self.db.unit_of_work() as uow:
                store = ActivitiesStore(uow.conn)
                found = await store.rotting(now, self.batch)
                for deal in found:
                    rotting = is_rotting(open_=True, rotting_days=deal.rotting_days,
                                         last_activity_at=deal.last_activity_at,
                                         stage_entered_at=deal.stage_entered_at, now=now)
                    if rotting and await store.mark_rotting(deal):
                        uow.add(wire.deal_rotting(deal))
                        marked += 1
            announced += marked
            if len(found) < self.batch or marked == 0:
                return announced

    async def run(self) -> None:
        """Check every ``interval_seconds`` until cancelled."""
        while True:
            try:
                found = await self.check()
                if found:
                    log.info("rotting deals announced", extra={"deals": found})
            except Exception:
                log.exception("the rotting check failed; trying again")
            await asyncio.sleep(self.interval_seconds)

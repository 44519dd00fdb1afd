"""Lead scoring's use cases: the workspace's model, behaviour and attributes fed from the
topics, each contact's score kept current and ``lead.score_changed`` published when it moves.

A contact is scored again, in the transaction that records it, whenever one of its events or
attribute changes arrives. Saving a model does not re-score in the request: it wakes the
background re-scorer, which takes every score computed under an older model (in batches, one
transaction each) within seconds; until then a score shows the model version it was computed
under. The same re-scorer applies decay: a score computed longer ago than ``rescore_every``
(an hour by default) is computed again. Either way, a score that moved from the one last
published by at least ``min_change`` points, or across a threshold of the model, is published
once, through the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from crm_pipeline.domain.errors import VersionMismatch
from crm_pipeline.domain.model import ContactMerge
from crm_pipeline.domain.scoring import (
    BehaviourSeen,
    ContactSeen,
    ScoringModel,
    crossed,
    parse_model,
    score,
    worth_telling,
)
from crm_pipeline.store.scoring import NewEvent, ScoringStore, StoredScore
from crm_pipeline.wire import lead_score_changed
from crmkit.kafka import Delivered
from crmkit.pagination import InvalidCursor, decode_cursor, encode_cursor
from crmkit.personal_data import MAX_ITEMS
from crmkit.postgres import PgDatabase, PgUnitOfWork
from crmkit.redirects import ContactRedirects

log = logging.getLogger(__name__)

BEHAVIOUR_CONSUMER = "pipeline.scoring.behaviour"
ATTRIBUTES_CONSUMER = "pipeline.scoring.contacts"
MERGES_CONSUMER = "pipeline.scoring.merges"
RESCORE_BATCH = 200
_CURSOR = "lead-scores"


@dataclass(frozen=True)
class ScorePage:
    items: list[StoredScore]
    next_cursor: str | None


class LeadScoring:
    def __init__(self, db: PgDatabase, *, min_change: Decimal = Decimal(1),
                 rescore_every: timedelta = timedelta(hours=1), keep_events: timedelta = timedelta(days=730),
                 idle_seconds: float = 30.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.min_change = min_change
        self.rescore_every = rescore_every
        self.keep_events = keep_events
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._wake = asyncio.Event()

    # The model ---------------------------------------------------------------------------

    async def model(self, workspace_id: str) -> ScoringModel:
        async with self.db.pool.acquire() as conn:
            return await ScoringStore(conn).model(workspace_id)

    async def save_model(self, workspace_id: str, raw: Mapping[str, Any], expected_version: int,
                         actor: str) -> ScoringModel:
        """Replace the workspace's model (InvalidFields naming every bad rule, VersionMismatch
        when ``expected_version`` is not current) and have every score re-computed soon."""
        model = parse_model(raw)
        async with self.db.unit_of_work() as uow:
            store = ScoringStore(uow.conn)
            version = await store.save_model(workspace_id, model, expected_version, actor)
            if version is None:
                raise VersionMismatch(await store.model_version(workspace_id))
        self._wake.set()
        return replace(model, version=version)

    # What arrives from the topics --------------------------------------------------------

    async def record_behaviour(self, items: Sequence[Delivered[BehaviourSeen]]) -> int:
        """Keep each behaviour event once (by event id) for its contact (its survivor, when it
        was merged away) and score the contacts again, in one transaction; returns the new ones."""
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(BEHAVIOUR_CONSUMER, [d.event_id for d in items])
            claimed = [d for d in items if d.event_id in fresh]
            contacts = await ContactRedirects(uow.conn).resolve(
                (d.workspace_id, d.item.contact_id) for d in claimed)
            events = [NewEvent(d.workspace_id, d.event_id, contacts[d.workspace_id, d.item.contact_id],
                               d.item.kind, d.item.occurred_at) for d in claimed]
            await ScoringStore(uow.conn).add_events(events)
            await self._rescore(uow, {(e.workspace_id, e.contact_id) for e in events})
        return len(events)

    async def record_contacts(self, items: Sequence[Delivered[ContactSeen]]) -> int:
        """Keep each contact's attributes (unless a newer version is kept already) and score it
        again; a contact merged away is left alone. Returns the contacts whose attributes changed."""
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(ATTRIBUTES_CONSUMER, [d.event_id for d in items])
            claimed = [d for d in items if d.event_id in fresh]
            contacts = await ContactRedirects(uow.conn).resolve(
                (d.workspace_id, d.item.contact_id) for d in claimed)
            store = ScoringStore(uow.conn)
            changed: set[tuple[str, UUID]] = set()
            for d in claimed:
                key = (d.workspace_id, d.item.contact_id)
                if contacts[key] != d.item.contact_id:
                    continue  # merged away: the survivor's own attributes count
                if await store.put_attributes(d.workspace_id, d.item.contact_id, d.item.attributes,
                                              d.item.version):
                    changed.add(key)
            await self._rescore(uow, changed)
        return len(changed)

    async def merge_contacts(self, items: Sequence[Delivered[ContactMerge]]) -> int:
        """Fold each loser's behaviour into its survivor and score the survivor again, each merge
        in one transaction, once per event. The redirect is recorded here or, when another part
        of pipeline recorded it first, followed. Returns how many merges moved something."""
        folded = 0
        for delivered in items:
            workspace_id, merge = delivered.workspace_id, delivered.item
            async with self.db.unit_of_work() as uow:
                if not await uow.claim(MERGES_CONSUMER, delivered.event_id):
                    continue
                redirects = ContactRedirects(uow.conn)
                survivor = await redirects.merge(workspace_id, merge.loser_id, merge.survivor_id)
                if survivor is None:  # recorded already: the loser stands for its survivor
                    loser = (workspace_id, merge.loser_id)
                    survivor = (await redirects.resolve([loser]))[loser]
                store = ScoringStore(uow.conn)
                await store.lock(workspace_id, [merge.loser_id, survivor])
                if await store.fold(workspace_id, merge.loser_id, survivor):
                    folded += 1
                    await self._rescore(uow, {(workspace_id, survivor)})
        return folded

    async def erase(self, uow: PgUnitOfWork, workspace_id: str, contact_id: UUID) -> None:
        """An eraser for pipeline's erasure (service/privacy.py): delete what scoring holds of
        the person, in the transaction that erases the rest. Nothing is published for it."""
        await ScoringStore(uow.conn).erase(workspace_id, [contact_id])

    async def personal_data(self, workspace_id: str, contact_ids: list[UUID]
                            ) -> dict[str, list[dict[str, Any]]]:
        """What scoring holds of a person (the contact and the ids merged into it), for their data
        export: scores, attribute snapshots, behaviour events. One more than ``MAX_ITEMS`` a
        section, so that a cut shows."""
        async with self.db.pool.acquire() as conn:
            return await ScoringStore(conn).of_contacts(workspace_id, contact_ids, MAX_ITEMS + 1)

    # Reading -----------------------------------------------------------------------------

    async def contact_score(self, workspace_id: str, contact_id: UUID) -> StoredScore | None:
        async with self.db.pool.acquire() as conn:
            return await ScoringStore(conn).score(workspace_id, contact_id)

    async def top(self, workspace_id: str, minimum: Decimal | None, cursor: str | None,
                  limit: int) -> ScorePage:
        """Scores from the highest, ``limit`` a page; InvalidCursor for a cursor not ours."""
        after = None
        if cursor:
            raw_score, raw_contact = decode_cursor(_CURSOR, cursor, 2)
            try:
                after = (Decimal(raw_score), UUID(raw_contact))
            except (ArithmeticError, ValueError, TypeError) as exc:
                raise InvalidCursor() from exc
        async with self.db.pool.acquire() as conn:
            rows = await ScoringStore(conn).top(workspace_id, minimum, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        return ScorePage(rows, encode_cursor(_CURSOR, [str(last.score), str(last.contact_id)])
                         if last else None)

    # Re-scoring --------------------------------------------------------------------------

    async def rescore_due(self) -> int:
        """Score again, in one transaction, up to a batch of contacts scored under an older
        model or longer ago than ``rescore_every``; returns how many."""
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            due = await ScoringStore(uow.conn).due(now - self.rescore_every, RESCORE_BATCH)
            await self._rescore(uow, set(due), now)
        return len(due)

    async def forget_old_events(self) -> int:
        async with self.db.pool.acquire() as conn:
            return await ScoringStore(conn).forget_events_before(self.clock() - self.keep_events)

    async def run(self) -> None:
        """Re-score until cancelled: right after a model is saved, else every ``idle_seconds``
        (which finds the scores an hour old); old events are forgotten on the way."""
        while True:
            try:
                while await self.rescore_due() == RESCORE_BATCH:
                    pass
                await self.forget_old_events()
            except Exception:
                log.exception("lead re-scoring failed; trying again")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.idle_seconds)

    async def _rescore(self, uow: PgUnitOfWork, contacts: Iterable[tuple[str, UUID]],
                       now: datetime | None = None) -> None:
        """Compute the contacts' scores now and publish those that moved enough since the score
        last published; each contact locked, so its publication is never raced."""
        wanted = sorted(set(contacts))
        if not wanted:
            return
        now = now or self.clock()
        store = ScoringStore(uow.conn)
        models = await store.models([ws for ws, _ in wanted])
        for workspace_id, contact_id in wanted:
            model = models[workspace_id]
            await store.lock(workspace_id, [contact_id])
            result = score(model, await store.attributes(workspace_id, contact_id),
                           await store.events(workspace_id, contact_id), now)
            before = await store.score(workspace_id, contact_id)
            published = before.published_score if before else Decimal(0)
            if model.version > 0 and worth_telling(published, result.value, model.thresholds,
                                                   self.min_change):
                uow.add(lead_score_changed(workspace_id, contact_id, published, result, model.version, now,
                                           crossed(published, result.value, model.thresholds)))
                published = result.value
            await store.save_score(workspace_id, contact_id, result, model.version, now, published)

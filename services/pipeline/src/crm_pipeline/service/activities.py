"""Activities' use cases: written over the API, recorded from the interaction stream onto the
contact's open deals, and following their contacts' merges. Each change is one transaction with
its event (crm.pipeline.activity.*) in the outbox and, when it is on a deal, the deal's
``last_activity_at`` moved on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from crm_pipeline import wire
from crm_pipeline.domain import events
from crm_pipeline.domain.activities import (
    MAX_SUBJECT,
    Activity,
    StreamMessage,
    apply_changes,
    complete,
    parse_changes,
    parse_new,
    stream_body,
)
from crm_pipeline.domain.errors import FieldError, InvalidFields, NotFound, VersionMismatch
from crm_pipeline.domain.model import ContactMerge
from crm_pipeline.store.activities import ActivitiesStore, ActivityFilter
from crmkit.contacts import ContactsClient
from crmkit.ids import uuid7
from crmkit.kafka import Delivered
from crmkit.pagination import InvalidCursor, decode_cursor, encode_cursor
from crmkit.personal_data import MAX_ITEMS
from crmkit.postgres import PgDatabase, PgUnitOfWork
from crmkit.redirects import ContactRedirects

STREAM_CONSUMER = "pipeline.activities"
MERGES_CONSUMER = "pipeline.merges.activities"
# Who wrote an activity from the interaction stream.
STREAM_AUTHOR = "interactions"
MAX_PAGE = 100
_LIST_CURSOR = "activities"
_TIMELINE_CURSOR = "timeline"

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class ActivityPage:
    items: list[Activity]
    next_cursor: str | None


def _now() -> datetime:
    return datetime.now(UTC)


class Activities:
    def __init__(self, db: PgDatabase, contacts: ContactsClient | None, clock: Clock = _now) -> None:
        self.db = db
        self.contacts = contacts
        self.clock = clock

    # -- written over the API ---------------------------------------------------------------

    async def create(self, workspace_id: str, actor: str, raw: dict[str, Any]) -> Activity:
        """Every bad field is named in one 422; an unknown deal or contact is one of them."""
        draft = parse_new(raw)
        contact_id = await self._contact(workspace_id, draft.contact_id)
        now = self.clock()
        activity = Activity(
            id=uuid7(), workspace_id=workspace_id, kind=draft.kind, subject=draft.subject, body=draft.body,
            due_at=draft.due_at, owner_id=draft.owner_id if "owner_id" in raw else actor,
            deal_id=draft.deal_id, contact_id=contact_id,
            completed_at=now if draft.done else None, completed_by=actor if draft.done else None,
            interaction_id=None, direction=None, version=1, created_by=actor, created_at=now, updated_at=now)
        async with self.db.unit_of_work() as uow:
            store = ActivitiesStore(uow.conn)
            await self._check_deal(store, workspace_id, activity.deal_id)
            created = await store.insert(activity)
            await self._touch(store, created, now)
            uow.add(wire.activity_event(events.ACTIVITY_CREATED, created, actor))
        return created

    async def get(self, workspace_id: str, activity_id: UUID) -> Activity:
        async with self.db.pool.acquire() as conn:
            activity = await ActivitiesStore(conn).get(workspace_id, activity_id)
        if activity is None:
            raise NotFound("activity")
        return activity

    async def update(self, workspace_id: str, actor: str, activity_id: UUID, raw: dict[str, Any],
                     expected_version: int) -> Activity:
        """The fields sent change; ``done`` completes or reopens. Completing it, or moving it
        onto a deal, counts as activity on that deal."""
        changes = parse_changes(raw)
        if "contact_id" in changes:
            changes["contact_id"] = await self._contact(workspace_id, changes["contact_id"])
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            store = ActivitiesStore(uow.conn)
            activity = await self._current(store, workspace_id, activity_id, expected_version)
            changed = apply_changes(activity, changes, now, actor)
            if changed == activity:
                return activity
            if changed.deal_id != activity.deal_id:
                await self._check_deal(store, workspace_id, changed.deal_id)
            saved = await store.update(changed)
            if saved.deal_id != activity.deal_id or (saved.done and not activity.done):
                await self._touch(store, saved, now)
            names = [n for n in ("subject", "body", "due_at", "owner_id", "deal_id", "contact_id", "done")
                     if getattr(saved, n) != getattr(activity, n)]
            uow.add(wire.activity_event(events.ACTIVITY_UPDATED, saved, actor, names))
            if saved.done and not activity.done:
                uow.add(wire.activity_event(events.ACTIVITY_COMPLETED, saved, actor))
        return saved

    async def complete(self, workspace_id: str, actor: str, activity_id: UUID) -> Activity:
        """Done now by the caller; completing a done activity changes nothing (no event)."""
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            store = ActivitiesStore(uow.conn)
            activity = await store.get(workspace_id, activity_id, for_update=True)
            if activity is None:
                raise NotFound("activity")
            done = complete(activity, now, actor)
            if done is None:
                return activity
            saved = await store.update(done)
            await self._touch(store, saved, now)
            uow.add(wire.activity_event(events.ACTIVITY_COMPLETED, saved, actor))
        return saved

    async def delete(self, workspace_id: str, actor: str, activity_id: UUID, expected_version: int) -> None:
        async with self.db.unit_of_work() as uow:
            store = ActivitiesStore(uow.conn)
            activity = await self._current(store, workspace_id, activity_id, expected_version)
            await store.delete(workspace_id, activity_id)
            uow.add(wire.activity_event(events.ACTIVITY_DELETED, activity, actor))

    async def find(self, workspace_id: str, where: ActivityFilter, cursor: str | None, limit: int
                   ) -> ActivityPage:
        before = None
        if cursor:
            try:
                before = UUID(str(decode_cursor(_LIST_CURSOR, cursor, 1)[0]))
            except ValueError as exc:
                raise InvalidCursor() from exc
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            found = await ActivitiesStore(conn).find(workspace_id, where, before, limit + 1)
        page = found[:limit]
        more = len(found) > limit
        return ActivityPage(page, encode_cursor(_LIST_CURSOR, [str(page[-1].id)]) if more else None)

    async def timeline(self, workspace_id: str, deal_id: UUID, cursor: str | None, limit: int
                       ) -> ActivityPage:
        """The deal's activities, latest first (done, else due, else written); 404 for no deal."""
        before = None
        if cursor:
            try:
                at, last = decode_cursor(_TIMELINE_CURSOR, cursor, 2)
                before = (datetime.fromisoformat(str(at)), UUID(str(last)))
            except ValueError as exc:
                raise InvalidCursor() from exc
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            store = ActivitiesStore(conn)
            if await store.deal(workspace_id, deal_id) is None:
                raise NotFound("deal")
            found = await store.timeline(workspace_id, deal_id, before, limit + 1)
        page = found[:limit]
        more = len(found) > limit
        cursor_out = (encode_cursor(_TIMELINE_CURSOR, [page[-1].timeline_at.isoformat(), str(page[-1].id)])
                      if more else None)
        return ActivityPage(page, cursor_out)

    async def _current(self, store: ActivitiesStore, workspace_id: str, activity_id: UUID,
                       expected_version: int) -> Activity:
        activity = await store.get(workspace_id, activity_id, for_update=True)
        if activity is None:
            raise NotFound("activity")
        if activity.version != expected_version:
            raise VersionMismatch(activity.version)
        return activity

    async def _contact(self, workspace_id: str, contact_id: UUID | None) -> UUID | None:
        """The contact as contacts knows it now (a merged-away id answers with its survivor);
        a 422 on ``contact_id`` when there is none. Asked before any transaction opens, so that
        no remote call holds a lock; contacts unreachable is a 503 (api/errors.py)."""
        if contact_id is None or self.contacts is None:
            return contact_id
        contact = await self.contacts.get_contact(workspace_id, str(contact_id))
        if contact is None:
            raise InvalidFields([FieldError("contact_id", "no such contact in this workspace")])
        return UUID(contact.id) if contact.id else contact_id

    @staticmethod
    async def _check_deal(store: ActivitiesStore, workspace_id: str, deal_id: UUID | None) -> None:
        if deal_id is not None and await store.deal(workspace_id, deal_id) is None:
            raise InvalidFields([FieldError("deal_id", "no such deal in this workspace")])

    @staticmethod
    async def _touch(store: ActivitiesStore, activity: Activity, now: datetime) -> None:
        if activity.deal_id is not None:
            await store.touch_deals(activity.workspace_id, {activity.deal_id: now})

    # -- from the interaction stream --------------------------------------------------------------

    async def record_interactions(self, items: Sequence[Delivered[StreamMessage]]) -> int:
        """Link each message to every open deal of its contact (as primary contact or
        participant; a contact merged away stands for its survivor) as a done activity, and move
        those deals' last activity on. Once per event and per interaction and deal, in one
        transaction; returns the activities written."""
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(STREAM_CONSUMER, [d.event_id for d in items])
            wanted = [d for d in items if d.event_id in fresh and d.item.kind is not None]
            if not wanted:
                return 0
            contacts = await ContactRedirects(uow.conn).resolve(
                (d.workspace_id, d.item.contact_id) for d in wanted)
            store = ActivitiesStore(uow.conn)
            drafts: list[Activity] = []
            for workspace_id in sorted({d.workspace_id for d in wanted}):
                mine = [d for d in wanted if d.workspace_id == workspace_id]
                deals = await store.open_deals_of(
                    workspace_id, list({contacts[workspace_id, d.item.contact_id] for d in mine}))
                for d in mine:
                    contact_id = contacts[workspace_id, d.item.contact_id]
                    drafts += [self._from_stream(workspace_id, d.item, contact_id, deal_id, now)
                               for deal_id in deals.get(contact_id, [])]
            written = await store.insert_from_stream(drafts)
            await self._touch_all(uow, written)
        return len(written)

    @staticmethod
    def _from_stream(workspace_id: str, message: StreamMessage, contact_id: UUID, deal_id: UUID,
                     now: datetime) -> Activity:
        assert message.kind is not None
        return Activity(
            id=uuid7(), workspace_id=workspace_id, kind=message.kind, subject=message.subject[:MAX_SUBJECT],
            body=stream_body(message.text), due_at=None, owner_id=None, deal_id=deal_id,
            contact_id=contact_id, completed_at=message.occurred_at, completed_by=None,
            interaction_id=message.interaction_id, direction=message.direction, version=1,
            created_by=STREAM_AUTHOR, created_at=now, updated_at=now)

    @staticmethod
    async def _touch_all(uow: PgUnitOfWork, written: Sequence[Activity]) -> None:
        store = ActivitiesStore(uow.conn)
        for workspace_id in sorted({a.workspace_id for a in written}):
            latest: dict[UUID, datetime] = {}
            for a in written:
                if a.workspace_id == workspace_id and a.deal_id is not None and a.completed_at is not None:
                    latest[a.deal_id] = max(latest.get(a.deal_id, a.completed_at), a.completed_at)
            await store.touch_deals(workspace_id, latest)
        for activity in written:
            uow.add(wire.activity_event(events.ACTIVITY_CREATED, activity, STREAM_AUTHOR))

    # -- contact merges ----------------------------------------------------------------------------

    async def follow_merges(self, items: Sequence[Delivered[ContactMerge]]) -> int:
        """Re-point what named each merged-away contact (activities, deals' primary contact,
        deal participants) to the contact it is now, each merge in one transaction, once per
        event. Runs after the merge's redirect was recorded, so that an activity written for
        the loser either was written before (and moves now) or finds the redirect."""
        moved = 0
        for delivered in items:
            workspace_id, merge = delivered.workspace_id, delivered.item
            async with self.db.unit_of_work() as uow:
                if not await uow.claim(MERGES_CONSUMER, delivered.event_id):
                    continue
                redirects = ContactRedirects(uow.conn)
                loser, survivor = (workspace_id, merge.loser_id), (workspace_id, merge.survivor_id)
                now_is = (await redirects.resolve([loser]))[loser]
                if now_is == merge.loser_id:  # no redirect recorded: the survivor as it stands now
                    now_is = (await redirects.resolve([survivor]))[survivor]
                store = ActivitiesStore(uow.conn)
                moved += await store.repoint_contact(workspace_id, merge.loser_id, now_is)
        return moved

    async def personal_data(self, workspace_id: str, contact_ids: list[UUID]
                            ) -> dict[str, list[dict[str, Any]]]:
        """The contacts' activities, every stored column, for a person's data export. One more
        than ``MAX_ITEMS``, so that a cut shows."""
        async with self.db.pool.acquire() as conn:
            return {"activities": await ActivitiesStore(conn).of_contacts(workspace_id, contact_ids,
                                                                          MAX_ITEMS + 1)}

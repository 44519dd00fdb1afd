"""Segments' use cases, and the membership re-evaluation every contact write ends with.

A segment write, its full recompute and its events (the segment's, then one per contact that
joined or left) commit together in one unit of work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from crm_contacts.domain.errors import InvalidCursor, NotFound, VersionMismatch
from crm_contacts.domain.segment_events import (
    SEGMENT_CREATED,
    SEGMENT_DELETED,
    SEGMENT_UPDATED,
    MembershipChange,
)
from crm_contacts.domain.segment_model import AudienceMember, Segment
from crm_contacts.domain.segments import InvalidSegment, RuleError, parse_rules, validate_name
from crm_contacts.store import audit
from crm_contacts.store import segments as store
from crm_contacts.store.segment_sql import Predicate, compile_rule
from crm_contacts.wire_segments import membership_changed, segment_changed
from crmkit import pagination
from crmkit.ids import uuid7
from crmkit.postgres import PgDatabase, PgUnitOfWork

MAX_PAGE = 100
MAX_MEMBERS_PAGE = 1000
AUDIENCE_PAGE = 500
MAX_STREAM_SEGMENTS = 100


@dataclass(frozen=True)
class SegmentPage:
    items: list[Segment]
    next_cursor: str | None


@dataclass(frozen=True)
class MembersPage:
    contact_ids: list[UUID]
    next_cursor: str | None


@dataclass(frozen=True)
class Recomputed:
    """A segment after a write or a recompute, and how many contacts joined and left it."""

    segment: Segment
    joined: int
    left: int


async def reevaluate_membership(uow: PgUnitOfWork, workspace_id: str, contact_ids: Sequence[UUID]) -> None:
    """Bring these contacts' memberships of every segment of the workspace up to date, inside
    the caller's unit of work, and add one membership_changed event per contact and segment that
    changed. Call it after any write to contacts (or to their identities, companies or consent)."""
    _publish(uow, workspace_id, await store.reevaluate(uow.conn, workspace_id, contact_ids))


def _publish(uow: PgUnitOfWork, workspace_id: str, changes: Sequence[MembershipChange]) -> None:
    for change in changes:
        uow.add(membership_changed(workspace_id, change))


async def _predicate(conn: asyncpg.Connection, workspace_id: str, rules: object,
                     name: str | None = None) -> Predicate:
    """The rules compiled under the workspace's custom fields; InvalidSegment lists every
    problem with the name and the rules together."""
    errors: list[RuleError] = []
    if name is not None:
        try:
            validate_name(name)
        except InvalidSegment as exc:
            errors.extend(exc.errors)
    fields = {f.key: f for f in await store.contact_fields(conn, workspace_id)}
    try:
        rule = parse_rules(rules, fields)
    except InvalidSegment as exc:
        errors.extend(exc.errors)
    if errors:
        raise InvalidSegment(errors)
    return compile_rule(rule)


class SegmentsService:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def create(self, workspace_id: str, actor: str, name: str, rules: object) -> Recomputed:
        async with self.db.unit_of_work() as uow:
            await store.lock_segments(uow.conn, workspace_id, exclusive=True)
            predicate = await _predicate(uow.conn, workspace_id, rules, name)
            assert isinstance(rules, dict)  # parse_rules accepts only an object
            segment = await store.insert(uow.conn, workspace_id, uuid7(), validate_name(name), rules)
            uow.add(segment_changed(SEGMENT_CREATED, segment))
            await audit.record(uow.conn, workspace_id, "segment", segment.id, "create", actor, None,
                               _snapshot(segment))
            changes = await store.recompute(uow.conn, workspace_id, segment.id, predicate)
            _publish(uow, workspace_id, changes)
        return _recomputed(segment, changes)

    async def get(self, workspace_id: str, segment_id: UUID) -> Segment | None:
        async with self.db.pool.acquire() as conn:
            return await store.get(conn, workspace_id, segment_id)

    async def list_segments(self, workspace_id: str, cursor: str | None, limit: int) -> SegmentPage:
        after = _decode(cursor, "segments", 2) if cursor else None
        limit = max(1, min(limit, MAX_PAGE))
        try:
            position = (datetime.fromisoformat(after[0]), UUID(after[1])) if after else None
        except (TypeError, ValueError) as exc:
            raise InvalidCursor() from exc
        async with self.db.pool.acquire() as conn:
            items = await store.page(conn, workspace_id, position, limit + 1)
        page = items[:limit]
        last = page[-1] if len(items) > limit else None
        next_cursor = (pagination.encode_cursor("segments", [last.created_at.isoformat(), str(last.id)])
                       if last else None)
        return SegmentPage(page, next_cursor)

    async def update(self, workspace_id: str, actor: str, segment_id: UUID, expected_version: int | None, *,
                     name: str | None = None, rules: object = None) -> Recomputed:
        """Change the name and/or the rules (None leaves each as it is); new rules recompute the
        members. ``expected_version`` None means any version (``If-Match: *``)."""
        async with self.db.unit_of_work() as uow:
            await store.lock_segments(uow.conn, workspace_id, exclusive=True)
            current = await self._current(uow.conn, workspace_id, segment_id, expected_version)
            predicate = (await _predicate(uow.conn, workspace_id, rules, name) if rules is not None
                         else None)
            new_name = validate_name(name) if name is not None else current.name
            new_rules: dict[str, Any] = rules if isinstance(rules, dict) else current.rules
            segment = await store.update(uow.conn, workspace_id, segment_id, new_name, new_rules)
            uow.add(segment_changed(SEGMENT_UPDATED, segment))
            await audit.record(uow.conn, workspace_id, "segment", segment_id, "update", actor,
                               _snapshot(current), _snapshot(segment))
            changes: list[MembershipChange] = []
            if predicate is not None and new_rules != current.rules:
                changes = await store.recompute(uow.conn, workspace_id, segment_id, predicate)
                _publish(uow, workspace_id, changes)
        return _recomputed(segment, changes)

    async def delete(self, workspace_id: str, actor: str, segment_id: UUID, expected_version: int | None
                     ) -> None:
        """Its memberships go with it; consumers learn of it from the deleted event alone."""
        async with self.db.unit_of_work() as uow:
            await store.lock_segments(uow.conn, workspace_id, exclusive=True)
            current = await self._current(uow.conn, workspace_id, segment_id, expected_version)
            await store.delete(uow.conn, workspace_id, segment_id)
            uow.add(segment_changed(SEGMENT_DELETED, current))
            await audit.record(uow.conn, workspace_id, "segment", segment_id, "delete", actor,
                               _snapshot(current), None)

    async def recompute(self, workspace_id: str, segment_id: UUID) -> Recomputed:
        """Recompute the members from scratch (InvalidSegment when a custom field the rules use
        was removed since)."""
        async with self.db.unit_of_work() as uow:
            await store.lock_segments(uow.conn, workspace_id, exclusive=True)
            segment = await self._current(uow.conn, workspace_id, segment_id, None)
            predicate = await _predicate(uow.conn, workspace_id, segment.rules)
            changes = await store.recompute(uow.conn, workspace_id, segment_id, predicate)
            _publish(uow, workspace_id, changes)
        return _recomputed(segment, changes)

    async def members(self, workspace_id: str, segment_id: UUID, cursor: str | None,
                      limit: int) -> MembersPage:
        """A page of the segment's member ids in id order."""
        after = _decode_id(cursor) if cursor else None
        limit = max(1, min(limit, MAX_MEMBERS_PAGE))
        async with self.db.pool.acquire() as conn:
            if await store.get(conn, workspace_id, segment_id) is None:
                raise NotFound("segment")
            page = await store.members_page(conn, workspace_id, [segment_id], [], after, limit)
        next_cursor = pagination.encode_cursor("members", [str(page.last)]) if page.last else None
        return MembersPage(page.contact_ids, next_cursor)

    async def audience(self, workspace_id: str, include: Sequence[UUID], exclude: Sequence[UUID],
                       page_size: int = AUDIENCE_PAGE) -> AsyncIterator[list[AudienceMember]]:
        """Members of any of ``include`` and of none of ``exclude``, each once, in id order, page
        by page. NotFound before the first page when a segment is not in the workspace."""
        wanted = set(include) | set(exclude)
        async with self.db.pool.acquire() as conn:
            if await store.existing(conn, workspace_id, list(wanted)) != wanted:
                raise NotFound("segment")
            fields = {f.key: f for f in await store.contact_fields(conn, workspace_id)}
        after: UUID | None = None
        while True:
            async with self.db.pool.acquire() as conn:  # not held while the caller sends a page
                page = await store.members_page(conn, workspace_id, include, exclude, after, page_size)
                members = await store.audience(conn, workspace_id, page.contact_ids, fields)
            if members:
                yield members
            if page.last is None:
                return
            after = page.last

    async def _current(self, conn: asyncpg.Connection, workspace_id: str, segment_id: UUID,
                       expected_version: int | None) -> Segment:
        segment = await store.get(conn, workspace_id, segment_id, for_update=True)
        if segment is None:
            raise NotFound("segment")
        if expected_version is not None and segment.version != expected_version:
            raise VersionMismatch(segment.version)
        return segment


def _snapshot(segment: Segment) -> dict[str, Any]:
    return {"name": segment.name, "rules": segment.rules, "version": segment.version}


def _recomputed(segment: Segment, changes: Sequence[MembershipChange]) -> Recomputed:
    joined = sum(1 for c in changes if c.member)
    return Recomputed(segment, joined, len(changes) - joined)


def _decode(cursor: str, kind: str, arity: int) -> list[Any]:
    try:
        return pagination.decode_cursor(kind, cursor, arity)
    except pagination.InvalidCursor as exc:
        raise InvalidCursor() from exc


def _decode_id(cursor: str) -> UUID:
    try:
        return UUID(str(_decode(cursor, "members", 1)[0]))
    except ValueError as exc:
        raise InvalidCursor() from exc

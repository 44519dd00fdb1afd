"""The replay store (``public_events``): every public event as partners see it, in feed order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg

from crm_partners.domain.model import PublicEvent

_COLUMNS = "seq, workspace_id, id, topic, type, source, subject, key, time, contact_ids, data::text AS data"


def _event(row: asyncpg.Record) -> PublicEvent:
    return PublicEvent(id=row["id"], workspace_id=row["workspace_id"], topic=row["topic"], type=row["type"],
                       source=row["source"], subject=row["subject"], key=row["key"], time=row["time"],
                       data=json.loads(row["data"]), contact_ids=tuple(row["contact_ids"]), seq=row["seq"])


def feed_lock(workspace_id: str) -> str:
    """The advisory lock key every writer of a workspace's feed holds until it commits."""
    return f"partners-feed:{workspace_id}"


class EventsStore:
    def __init__(self, conn: asyncpg.Connection | asyncpg.Pool) -> None:
        self.conn = conn

    async def insert(self, events: Sequence[PublicEvent]) -> list[PublicEvent]:
        """Store events (in a transaction), each workspace's under its feed lock so that seq
        order is commit order within a workspace; an event id already stored is left out.
        Returns the stored events with their seq, in the order given."""
        stored: list[PublicEvent] = []
        for workspace_id in sorted({e.workspace_id for e in events}):  # one order: no deadlocks
            await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", feed_lock(workspace_id))
            mine = [e for e in events if e.workspace_id == workspace_id]
            rows = await self.conn.fetch(
                "INSERT INTO public_events (workspace_id, id, topic, type, source, subject, key, time,"
                " contact_ids, data)"
                " SELECT $1, e.id, e.topic, e.type, e.source, e.subject, e.key, e.time,"
                "  ARRAY(SELECT jsonb_array_elements_text(e.contact_ids)), e.data"
                " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
                "  $8::timestamptz[], $9::jsonb[], $10::jsonb[]) WITH ORDINALITY"
                "  AS e(id, topic, type, source, subject, key, time, contact_ids, data, n)"
                " ORDER BY e.n"
                " ON CONFLICT (workspace_id, id) DO NOTHING RETURNING id, seq",
                workspace_id, [e.id for e in mine], [e.topic for e in mine], [e.type for e in mine],
                [e.source for e in mine], [e.subject for e in mine], [e.key for e in mine],
                [e.time for e in mine], [json.dumps(list(e.contact_ids)) for e in mine],
                [json.dumps(e.data, ensure_ascii=False) for e in mine])
            seqs = {row["id"]: row["seq"] for row in rows}
            stored.extend(replace(e, seq=seqs[e.id]) for e in mine if e.id in seqs)
        order = {(e.workspace_id, e.id): i for i, e in enumerate(events)}
        return sorted(stored, key=lambda e: order[e.workspace_id, e.id])

    async def page(self, workspace_id: str, after: int, types: Sequence[str] | None, limit: int
                   ) -> list[PublicEvent]:
        """The workspace's events after ``after`` in feed order; only ``types`` unless None."""
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM public_events WHERE workspace_id = $1 AND seq > $2"  # noqa: S608
            " AND ($3::text[] IS NULL OR type = ANY($3::text[])) ORDER BY seq LIMIT $4",
            workspace_id, after, list(types) if types is not None else None, limit)
        return [_event(row) for row in rows]

    async def erase_contact(self, workspace_id: str, contact_id: str) -> int:
        """Delete the events about a person (their pending deliveries go with them)."""
        result = await self.conn.execute(
            "DELETE FROM public_events WHERE workspace_id = $1 AND contact_ids @> ARRAY[$2::text]",
            workspace_id, contact_id)
        return int(result.split()[-1])

    async def merge_contact(self, workspace_id: str, loser_id: str, survivor_id: str) -> None:
        """The loser's events are the survivor's now: a later erasure of the survivor finds them."""
        await self.conn.execute(
            "UPDATE public_events SET contact_ids = array_replace(contact_ids, $2, $3)"
            " WHERE workspace_id = $1 AND contact_ids @> ARRAY[$2::text]",
            workspace_id, loser_id, survivor_id)

    async def about(self, workspace_id: str, contact_ids: Sequence[str], limit: int) -> list[dict[str, Any]]:
        """The events about these people, oldest first, as partners received them."""
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM public_events WHERE workspace_id = $1"  # noqa: S608
            " AND contact_ids && $2::text[] ORDER BY seq LIMIT $3", workspace_id, list(contact_ids), limit)
        return [_event(row).cloudevent() for row in rows]

    async def purge_older_than(self, age: timedelta, batch: int) -> int:
        """Delete up to ``batch`` events recorded longer ago than ``age``; how many went."""
        result = await self.conn.execute(
            "DELETE FROM public_events WHERE seq IN (SELECT seq FROM public_events"
            " WHERE recorded_at < now() - $1::interval ORDER BY recorded_at LIMIT $2)", age, batch)
        return int(result.split()[-1])

    async def partner_types(self, workspace_id: str, partner_id: str) -> list[str]:
        """The event types of a partner's enabled subscriptions (any delivery mode)."""
        rows = await self.conn.fetch(
            "SELECT DISTINCT unnest(event_types) AS type FROM subscriptions"
            " WHERE workspace_id = $1 AND partner_id = $2::uuid AND status = 'enabled'",
            workspace_id, partner_id)
        return [row["type"] for row in rows]

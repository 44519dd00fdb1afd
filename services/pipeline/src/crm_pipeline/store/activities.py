"""SQL of activities, of what they change on deals (last activity, rotting episodes) and of a
person's merge and erasure across both. Every query is scoped by workspace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from crm_pipeline.domain.activities import Activity, Kind, RottingDeal

_COLUMNS = ("id, workspace_id, kind, subject, body, due_at, owner_id, deal_id, contact_id, completed_at,"
            " completed_by, interaction_id, direction, version, created_by, created_at, updated_at")
_OPEN_DEAL = "d.status = 'open' AND d.deleted_at IS NULL"


def _activity(row: Any) -> Activity:
    fields = dict(row)
    fields["kind"] = Kind(fields["kind"])
    return Activity(**fields)


@dataclass(frozen=True)
class ActivityFilter:
    deal_id: UUID | None = None
    contact_id: UUID | None = None
    owner_id: str | None = None
    open: bool | None = None  # True: not done yet; False: done
    due_before: datetime | None = None


@dataclass(frozen=True)
class DealLink:
    """A deal as activities see it."""

    id: UUID
    contact_id: UUID | None
    open: bool


class ActivitiesStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # -- activities ---------------------------------------------------------------------------

    async def insert(self, activity: Activity) -> Activity:
        row = await self.conn.fetchrow(
            "INSERT INTO activities (id, workspace_id, kind, subject, body, due_at, owner_id, deal_id,"  # noqa: S608
            " contact_id, completed_at, completed_by, interaction_id, direction, created_by, created_at,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)"
            f" RETURNING {_COLUMNS}",
            activity.id, activity.workspace_id, activity.kind.value, activity.subject, activity.body,
            activity.due_at, activity.owner_id, activity.deal_id, activity.contact_id, activity.completed_at,
            activity.completed_by, activity.interaction_id, activity.direction, activity.created_by,
            activity.created_at)
        return _activity(row)

    async def insert_from_stream(self, activities: Sequence[Activity]) -> list[Activity]:
        """Insert the stream's activities that are not there yet (one per interaction and deal);
        returns those inserted."""
        if not activities:
            return []
        rows = await self.conn.fetch(
            "INSERT INTO activities (id, workspace_id, kind, subject, body, deal_id, contact_id,"  # noqa: S608
            " completed_at, interaction_id, direction, created_by, created_at, updated_at)"
            " SELECT * , now(), now() FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],"
            " $6::uuid[], $7::uuid[], $8::timestamptz[], $9::text[], $10::text[], $11::text[])"
            " ON CONFLICT (workspace_id, interaction_id, deal_id) WHERE interaction_id IS NOT NULL DO NOTHING"
            f" RETURNING {_COLUMNS}",
            [a.id for a in activities], [a.workspace_id for a in activities],
            [a.kind.value for a in activities],
            [a.subject for a in activities], [a.body for a in activities], [a.deal_id for a in activities],
            [a.contact_id for a in activities], [a.completed_at for a in activities],
            [a.interaction_id for a in activities], [a.direction for a in activities],
            [a.created_by for a in activities])
        return [_activity(r) for r in rows]

    async def get(self, workspace_id: str, activity_id: UUID, *, for_update: bool = False) -> Activity | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self.conn.fetchrow(
            f"SELECT {_COLUMNS} FROM activities WHERE workspace_id = $1 AND id = $2{lock}",  # noqa: S608
            workspace_id, activity_id)
        return _activity(row) if row else None

    async def update(self, activity: Activity) -> Activity:
        row = await self.conn.fetchrow(
            "UPDATE activities SET subject = $3, body = $4, due_at = $5, owner_id = $6, deal_id = $7,"  # noqa: S608
            " contact_id = $8, completed_at = $9, completed_by = $10, version = version + 1,"
            " updated_at = now() WHERE workspace_id = $1 AND id = $2"
            f" RETURNING {_COLUMNS}",
            activity.workspace_id, activity.id, activity.subject, activity.body, activity.due_at,
            activity.owner_id, activity.deal_id, activity.contact_id, activity.completed_at,
            activity.completed_by)
        return _activity(row)

    async def delete(self, workspace_id: str, activity_id: UUID) -> None:
        await self.conn.execute("DELETE FROM activities WHERE workspace_id = $1 AND id = $2",
                                workspace_id, activity_id)

    async def find(self, workspace_id: str, where: ActivityFilter, before: UUID | None, limit: int
                   ) -> list[Activity]:
        """Newest written first (ids are UUIDv7), after the cursor's id."""
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM activities WHERE workspace_id = $1"  # noqa: S608
            " AND ($2::uuid IS NULL OR deal_id = $2) AND ($3::uuid IS NULL OR contact_id = $3)"
            " AND ($4::text IS NULL OR owner_id = $4)"
            " AND ($5::boolean IS NULL OR (completed_at IS NULL) = $5)"
            " AND ($6::timestamptz IS NULL OR due_at < $6)"
            " AND ($7::uuid IS NULL OR id < $7) ORDER BY id DESC LIMIT $8",
            workspace_id, where.deal_id, where.contact_id, where.owner_id, where.open, where.due_before,
            before, limit)
        return [_activity(r) for r in rows]

    async def timeline(self, workspace_id: str, deal_id: UUID, before: tuple[datetime, UUID] | None,
                       limit: int) -> list[Activity]:
        """A deal's activities, latest on the timeline first."""
        at, after_id = before or (None, None)
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM activities WHERE workspace_id = $1 AND deal_id = $2"  # noqa: S608
            " AND ($3::timestamptz IS NULL OR (timeline_at, id) < ($3, $4::uuid))"
            " ORDER BY timeline_at DESC, id DESC LIMIT $5",
            workspace_id, deal_id, at, after_id, limit)
        return [_activity(r) for r in rows]

    # -- deals, as activities touch them ------------------------------------------------------------

    async def deal(self, workspace_id: str, deal_id: UUID) -> DealLink | None:
        """The deal (not deleted), or None."""
        row = await self.conn.fetchrow(
            "SELECT id, contact_id, status = 'open' AS open FROM deals"
            " WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL", workspace_id, deal_id)
        return DealLink(**dict(row)) if row else None

    async def open_deals_of(self, workspace_id: str, contact_ids: Sequence[UUID]) -> dict[UUID, list[UUID]]:
        """The open deals of each contact, as their primary contact or a participant."""
        rows = await self.conn.fetch(
            "SELECT d.contact_id AS contact, d.id FROM deals d WHERE d.workspace_id = $1"  # noqa: S608
            f" AND d.contact_id = ANY($2::uuid[]) AND {_OPEN_DEAL}"
            " UNION SELECT p.contact_id, d.id FROM deal_participants p JOIN deals d"
            " ON d.workspace_id = p.workspace_id AND d.id = p.deal_id"
            f" WHERE p.workspace_id = $1 AND p.contact_id = ANY($2::uuid[]) AND {_OPEN_DEAL}"
            " ORDER BY 1, 2",
            workspace_id, list(contact_ids))
        found: dict[UUID, list[UUID]] = {}
        for row in rows:
            found.setdefault(row["contact"], []).append(row["id"])
        return found

    async def touch_deals(self, workspace_id: str, touched: dict[UUID, datetime]) -> None:
        """Move each deal's last activity to the time given, unless it had a later one. The
        deal's version stays: an email arriving is no edit of the deal."""
        if not touched:
            return
        await self.conn.execute(
            "UPDATE deals d SET last_activity_at = GREATEST(d.last_activity_at, t.at)"
            " FROM unnest($2::uuid[], $3::timestamptz[]) AS t (id, at)"
            " WHERE d.workspace_id = $1 AND d.id = t.id",
            workspace_id, list(touched), list(touched.values()))

    # -- rotting --------------------------------------------------------------------------------

    async def rotting(self, now: datetime, limit: int) -> list[RottingDeal]:
        """Open deals that have rotted (quiet for longer than their stage's rotting_days) in an
        episode not announced yet: the rule of ``domain.activities.is_rotting``, in SQL."""
        rows = await self.conn.fetch(
            "SELECT * FROM (SELECT d.workspace_id, d.id, d.pipeline_id, d.stage_id, d.owner_id,"  # noqa: S608
            " d.contact_id, s.rotting_days, d.last_activity_at, d.stage_entered_at,"
            " GREATEST(d.last_activity_at, d.stage_entered_at) AS since, r.since AS announced"
            " FROM deals d JOIN stages s ON s.workspace_id = d.workspace_id AND s.id = d.stage_id"
            " LEFT JOIN deal_rotting r ON r.workspace_id = d.workspace_id AND r.deal_id = d.id"
            f" WHERE {_OPEN_DEAL} AND s.rotting_days IS NOT NULL) q"
            " WHERE since + make_interval(days => rotting_days) < $1"
            " AND (announced IS NULL OR announced < since) ORDER BY since LIMIT $2",
            now, limit)
        return [RottingDeal(**{k: v for k, v in dict(r).items() if k != "announced"}) for r in rows]

    async def mark_rotting(self, deal: RottingDeal) -> bool:
        """Record the deal's episode as announced; False when it was already (another replica
        won the race), so the event is written once."""
        return bool(await self.conn.fetchval(
            "INSERT INTO deal_rotting (workspace_id, deal_id, since) VALUES ($1, $2, $3)"
            " ON CONFLICT (workspace_id, deal_id) DO UPDATE SET since = EXCLUDED.since, fired_at = now()"
            " WHERE deal_rotting.since < EXCLUDED.since RETURNING 1",
            deal.workspace_id, deal.id, deal.since))

    # -- a person's merge and erasure ----------------------------------------------------------

    async def repoint_contact(self, workspace_id: str, loser_id: UUID, survivor_id: UUID) -> int:
        """What named the loser names the survivor: activities, deals' primary contact (a new
        version), and deal participants (one row per deal and person). Returns the rows moved."""
        moved = 0
        status = await self.conn.execute(
            "UPDATE activities SET contact_id = $3 WHERE workspace_id = $1 AND contact_id = $2",
            workspace_id, loser_id, survivor_id)
        moved += int(status.split()[-1])
        status = await self.conn.execute(
            "UPDATE deals SET contact_id = $3, version = version + 1, updated_at = now()"
            " WHERE workspace_id = $1 AND contact_id = $2", workspace_id, loser_id, survivor_id)
        moved += int(status.split()[-1])
        status = await self.conn.execute(
            "WITH gone AS (DELETE FROM deal_participants WHERE workspace_id = $1 AND contact_id = $2"
            " RETURNING deal_id, role)"
            " INSERT INTO deal_participants (workspace_id, deal_id, contact_id, role)"
            " SELECT $1, deal_id, $3, role FROM gone ON CONFLICT DO NOTHING",
            workspace_id, loser_id, survivor_id)
        moved += int(status.split()[-1])
        return moved

    async def erase_contact(self, workspace_id: str, contact_id: UUID) -> int:
        """Remove what pipeline's deals and activities hold of a person (see service.privacy);
        returns the activities erased."""
        deals = [r["id"] for r in await self.conn.fetch(
            "UPDATE deals SET contact_id = NULL, version = version + 1, updated_at = now()"
            " WHERE workspace_id = $1 AND contact_id = $2 RETURNING id", workspace_id, contact_id)]
        await self.conn.execute(
            "DELETE FROM deal_participants WHERE workspace_id = $1 AND contact_id = $2",
            workspace_id, contact_id)
        # Kept without a contact where a deal holds them (its timeline still counts them);
        # nothing is left of one about the person alone.
        deleted = await self.conn.execute(
            "DELETE FROM activities WHERE workspace_id = $1 AND contact_id = $2 AND deal_id IS NULL",
            workspace_id, contact_id)
        blanked = await self.conn.execute(
            "UPDATE activities SET subject = '', body = '', version = version + 1, updated_at = now(),"
            " contact_id = CASE WHEN contact_id = $2 THEN NULL ELSE contact_id END WHERE workspace_id = $1"
            " AND (contact_id = $2 OR (kind = 'note' AND deal_id = ANY($3::uuid[])))",
            workspace_id, contact_id, deals)
        await self.conn.execute(
            "DELETE FROM contact_activity WHERE workspace_id = $1 AND contact_id = $2",
            workspace_id, contact_id)
        return int(deleted.split()[-1]) + int(blanked.split()[-1])

    async def of_contacts(self, workspace_id: str, contact_ids: Sequence[UUID], limit: int
                          ) -> list[dict[str, Any]]:
        """Every stored column of the contacts' activities, for their data export."""
        rows = await self.conn.fetch(
            "SELECT * FROM activities WHERE workspace_id = $1 AND contact_id = ANY($2::uuid[])"
            " ORDER BY id LIMIT $3", workspace_id, list(contact_ids), limit)
        return [dict(r) for r in rows]

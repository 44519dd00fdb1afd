"""Segments' SQL: the segment rows, memberships computed set-based, and audiences page by page.

Memberships change in single statements (INSERT .. SELECT and DELETE in one WITH), never row
by row. Whoever changes a workspace's segment rules holds its segments lock exclusively; every
membership re-evaluation after a contact write holds it shared. So a recompute never runs on
contact rows older than a concurrent write that was evaluated under the old rules.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from crm_contacts.domain.fields import Entity
from crm_contacts.domain.segment_events import MembershipChange
from crm_contacts.domain.segment_model import AudienceMember, ConsentState, Segment
from crm_contacts.domain.segments import InvalidSegment
from crm_contacts.store import fields as field_store
from crm_contacts.store.contacts import ContactsStore
from crm_contacts.store.segment_sql import Predicate, compiled_rules
from crmkit.fields import FieldDefinition, defined_only

log = logging.getLogger(__name__)

_COLUMNS = "id, workspace_id, name, rules::text AS rules, version, created_at, updated_at"
_LIVE = "c.merged_into IS NULL AND c.erased_at IS NULL"
# One statement's parameters stay well below PostgreSQL's 32767.
_MAX_PARAMS = 20_000
_MAX_SEGMENTS_PER_STATEMENT = 200
_NO_ID = UUID(int=0)
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


async def lock_segments(conn: asyncpg.Connection, workspace_id: str, *, exclusive: bool) -> None:
    """The workspace's segments lock, held to the end of the transaction."""
    sql = ("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))" if exclusive
           else "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))")
    await conn.execute(sql, f"crm.contacts.segments:{workspace_id}")


async def contact_fields(conn: asyncpg.Connection, workspace_id: str) -> tuple[FieldDefinition, ...]:
    definitions = await field_store.definitions(conn, workspace_id, Entity.CONTACT)
    return tuple(sorted(definitions.values(), key=lambda d: d.key))


def _segment(row: asyncpg.Record) -> Segment:
    return Segment(id=row["id"], workspace_id=row["workspace_id"], name=row["name"],
                   rules=json.loads(row["rules"]), version=row["version"], created_at=row["created_at"],
                   updated_at=row["updated_at"])


async def insert(conn: asyncpg.Connection, workspace_id: str, segment_id: UUID, name: str,
                 rules: dict[str, Any]) -> Segment:
    row = await conn.fetchrow(
        "INSERT INTO segments (id, workspace_id, name, rules) VALUES ($1, $2, $3, $4::jsonb)"  # noqa: S608
        f" RETURNING {_COLUMNS}",
        segment_id, workspace_id, name, json.dumps(rules),
    )
    return _segment(row)


async def get(conn: asyncpg.Connection, workspace_id: str, segment_id: UUID, *,
              for_update: bool = False) -> Segment | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM segments WHERE workspace_id = $1 AND id = $2"  # noqa: S608
        + (" FOR UPDATE" if for_update else ""),
        workspace_id, segment_id,
    )
    return _segment(row) if row is not None else None


async def page(conn: asyncpg.Connection, workspace_id: str, after: tuple[datetime, UUID] | None,
               limit: int) -> list[Segment]:
    """Segments oldest first, from just after ``after`` (created_at, id)."""
    stamp, last_id = after or (_BEGINNING, _NO_ID)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM segments WHERE workspace_id = $1"  # noqa: S608
        " AND (created_at, id) > ($2, $3) ORDER BY created_at, id LIMIT $4",
        workspace_id, stamp, last_id, limit,
    )
    return [_segment(r) for r in rows]


async def update(conn: asyncpg.Connection, workspace_id: str, segment_id: UUID, name: str,
                 rules: dict[str, Any]) -> Segment:
    row = await conn.fetchrow(
        "UPDATE segments SET name = $3, rules = $4::jsonb, version = version + 1,"  # noqa: S608
        f" updated_at = now() WHERE workspace_id = $1 AND id = $2 RETURNING {_COLUMNS}",
        workspace_id, segment_id, name, json.dumps(rules),
    )
    return _segment(row)


async def delete(conn: asyncpg.Connection, workspace_id: str, segment_id: UUID) -> None:
    """Its members go with it (ON DELETE CASCADE)."""
    await conn.execute("DELETE FROM segments WHERE workspace_id = $1 AND id = $2", workspace_id, segment_id)


async def existing(conn: asyncpg.Connection, workspace_id: str, segment_ids: Sequence[UUID]) -> set[UUID]:
    rows = await conn.fetch("SELECT id FROM segments WHERE workspace_id = $1 AND id = ANY($2::uuid[])",
                            workspace_id, list(segment_ids))
    return {r["id"] for r in rows}


def _changes(rows: Sequence[asyncpg.Record], segment_id: UUID | None = None) -> list[MembershipChange]:
    return [MembershipChange(segment_id or r["segment_id"], r["contact_id"], r["member"]) for r in rows]


async def recompute(conn: asyncpg.Connection, workspace_id: str, segment_id: UUID,
                    predicate: Predicate) -> list[MembershipChange]:
    """Make the segment's members exactly the live contacts that match, in one statement;
    returns who joined and who left, by contact id."""
    sql = (
        "WITH matches AS MATERIALIZED (SELECT c.id FROM contacts c WHERE c.workspace_id = $1"  # noqa: S608
        f" AND {_LIVE} AND ({predicate.render(3)})),"
        " joined AS (INSERT INTO segment_members (segment_id, contact_id)"
        "  SELECT $2::uuid, x.id FROM matches x WHERE NOT EXISTS (SELECT 1 FROM segment_members m"
        "   WHERE m.segment_id = $2::uuid AND m.contact_id = x.id)"
        "  ON CONFLICT DO NOTHING RETURNING contact_id),"
        " gone AS (DELETE FROM segment_members m WHERE m.segment_id = $2::uuid"
        "  AND NOT EXISTS (SELECT 1 FROM matches x WHERE x.id = m.contact_id) RETURNING m.contact_id)"
        " SELECT true AS member, contact_id FROM joined UNION ALL SELECT false, contact_id FROM gone"
        " ORDER BY contact_id"
    )
    rows = await conn.fetch(sql, workspace_id, segment_id, *predicate.params)
    return _changes(rows, segment_id)


async def reevaluate(conn: asyncpg.Connection, workspace_id: str,
                     contact_ids: Sequence[UUID]) -> list[MembershipChange]:
    """Evaluate every segment of the workspace for just these contacts and bring their
    memberships up to date: one statement for up to 200 segments. A contact that is merged
    away, erased or not in the workspace leaves every segment."""
    ids = list(dict.fromkeys(contact_ids))
    if not ids:
        return []
    await lock_segments(conn, workspace_id, exclusive=False)
    rows = await conn.fetch("SELECT id, rules::text AS rules FROM segments WHERE workspace_id = $1"
                            " ORDER BY id", workspace_id)
    if not rows:
        return []
    fields = await contact_fields(conn, workspace_id)
    predicates: list[tuple[UUID, Predicate]] = []
    for row in rows:
        compiled = compiled_rules(row["rules"], fields)
        if isinstance(compiled, InvalidSegment):  # a field it uses was removed: leave it as it is
            log.warning("segment rules no longer valid", extra={"segment_id": str(row["id"])})
            continue
        predicates.append((row["id"], compiled))
    changes: list[MembershipChange] = []
    for batch in _batches(predicates):
        changes.extend(await _evaluate(conn, workspace_id, ids, batch))
    return changes


def _batches(predicates: list[tuple[UUID, Predicate]]) -> Iterator[list[tuple[UUID, Predicate]]]:
    batch: list[tuple[UUID, Predicate]] = []
    size = 0
    for item in predicates:
        cost = len(item[1].params) + 1
        if batch and (size + cost > _MAX_PARAMS or len(batch) >= _MAX_SEGMENTS_PER_STATEMENT):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += cost
    if batch:
        yield batch


async def _evaluate(conn: asyncpg.Connection, workspace_id: str, contact_ids: list[UUID],
                    batch: list[tuple[UUID, Predicate]]) -> list[MembershipChange]:
    params: list[Any] = [workspace_id, contact_ids, [segment_id for segment_id, _ in batch]]
    branches = []
    for segment_id, predicate in batch:
        params.append(segment_id)
        where = predicate.render(len(params) + 1)
        branches.append(f"SELECT ${len(params)}::uuid, c.id FROM c WHERE ({where})")  # noqa: S608
        params.extend(predicate.params)
    # Only SQL from segment_sql is joined in; every value is a parameter.
    sql = (
        "WITH c AS MATERIALIZED (SELECT * FROM contacts c WHERE c.workspace_id = $1"  # noqa: S608
        f" AND c.id = ANY($2::uuid[]) AND {_LIVE}),"
        " matches (segment_id, contact_id) AS (" + " UNION ALL ".join(branches) + "),"
        " joined AS (INSERT INTO segment_members (segment_id, contact_id)"
        "  SELECT segment_id, contact_id FROM matches"
        "  ON CONFLICT DO NOTHING RETURNING segment_id, contact_id),"
        " gone AS (DELETE FROM segment_members m WHERE m.segment_id = ANY($3::uuid[])"
        "  AND m.contact_id = ANY($2::uuid[]) AND NOT EXISTS (SELECT 1 FROM matches x"
        "   WHERE x.segment_id = m.segment_id AND x.contact_id = m.contact_id)"
        "  RETURNING m.segment_id, m.contact_id)"
        " SELECT true AS member, segment_id, contact_id FROM joined"
        " UNION ALL SELECT false, segment_id, contact_id FROM gone ORDER BY contact_id, segment_id"
    )
    return _changes(await conn.fetch(sql, *params))


@dataclass(frozen=True)
class MembersPage:
    """Live members in id order; ``last`` is the id the next page starts after (None at the end).
    A page can hold fewer than the limit (excluded members are skipped) and still not be the last."""

    contact_ids: list[UUID]
    last: UUID | None


async def members_page(conn: asyncpg.Connection, workspace_id: str, include: Sequence[UUID],
                       exclude: Sequence[UUID], after: UUID | None, limit: int) -> MembersPage:
    """Contacts in any of ``include`` and in none of ``exclude``, each once, by keyset on id.
    Each segment is read from its primary key in order, so a page costs the same at any depth."""
    rows = await conn.fetch(
        "WITH page AS (SELECT DISTINCT p.contact_id FROM segments s CROSS JOIN LATERAL ("  # noqa: S608
        "  SELECT m.contact_id FROM segment_members m WHERE m.segment_id = s.id AND m.contact_id > $3"
        "  ORDER BY m.contact_id LIMIT $4) p"
        " WHERE s.workspace_id = $1 AND s.id = ANY($2::uuid[]) ORDER BY p.contact_id LIMIT $4)"
        " SELECT page.contact_id, EXISTS (SELECT 1 FROM contacts c WHERE c.id = page.contact_id"
        f"  AND c.workspace_id = $1 AND {_LIVE})"
        " AND NOT EXISTS (SELECT 1 FROM segment_members x JOIN segments xs ON xs.id = x.segment_id"
        "  WHERE xs.workspace_id = $1 AND x.segment_id = ANY($5::uuid[]) AND x.contact_id = page.contact_id)"
        " AS keep FROM page ORDER BY page.contact_id",
        workspace_id, list(include), after or _NO_ID, limit, list(exclude),
    )
    last = rows[-1]["contact_id"] if len(rows) == limit else None
    return MembersPage([r["contact_id"] for r in rows if r["keep"]], last)


async def audience(conn: asyncpg.Connection, workspace_id: str, contact_ids: Sequence[UUID],
                   fields: Mapping[str, FieldDefinition]) -> list[AudienceMember]:
    """The live contacts among ``contact_ids`` in id order, with identities, companies and consent;
    custom values only of the fields defined now."""
    found = [c for c in await ContactsStore(conn).get_many(workspace_id, contact_ids) if not c.erased]
    consents: dict[UUID, list[ConsentState]] = {c.id: [] for c in found}
    for r in await conn.fetch(
        "SELECT contact_id, channel, purpose, status, source, at FROM consents WHERE workspace_id = $1"
        " AND contact_id = ANY($2::uuid[]) ORDER BY channel, purpose", workspace_id, list(consents),
    ):
        consents[r["contact_id"]].append(ConsentState(r["channel"], r["purpose"], r["status"], r["source"],
                                                      r["at"]))
    defined = dict(fields)
    return [AudienceMember(replace(c, custom=defined_only(defined, c.custom)), tuple(consents[c.id]))
            for c in found]

"""Duplicate scans' SQL: reading a workspace's contacts for a scan, the scan jobs, and their
candidate pairs. Every query is scoped by workspace or by a scan already checked to be the
caller's."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg

from crm_contacts.domain.duplicates import (
    Candidate,
    CandidatePosition,
    DuplicateScan,
    Pair,
    PairingResult,
    ScanStatus,
)

# One row per live contact (neither merged away nor erased), with its emails, phones,
# WhatsApp numbers and company names as arrays (NULL when it has none): the column order
# that domain.duplicates.Pairing.add() takes. Identities and companies are aggregated once
# per workspace (hash aggregates), not looked up contact by contact.
SCAN_CONTACTS = """
WITH ids AS (
    SELECT contact_id,
           array_agg(value) FILTER (WHERE kind = 'email') AS emails,
           array_agg(value) FILTER (WHERE kind = 'phone') AS phones,
           array_agg(value) FILTER (WHERE kind = 'whatsapp') AS whatsapps
    FROM identities
    WHERE workspace_id = $1 AND kind IN ('email', 'phone', 'whatsapp')
    GROUP BY contact_id
), orgs AS (
    SELECT cc.contact_id, array_agg(co.name) AS companies
    FROM contact_companies cc JOIN companies co ON co.id = cc.company_id
    WHERE cc.workspace_id = $1 AND co.workspace_id = $1
    GROUP BY cc.contact_id
)
SELECT c.id, c.first_name, c.last_name, c.display_name,
       ids.emails, ids.phones, ids.whatsapps, orgs.companies
FROM contacts c
LEFT JOIN ids ON ids.contact_id = c.id
LEFT JOIN orgs ON orgs.contact_id = c.id
WHERE c.workspace_id = $1 AND c.merged_into IS NULL AND c.erased_at IS NULL
"""

_SCAN = (
    "SELECT id, workspace_id, status, requested_by, created_at, started_at, finished_at,"
    " contacts_scanned, blocks_compared, blocks_skipped, comparisons, candidates,"
    " skipped::text AS skipped, error FROM duplicate_scans"
)
_SCAN_BY_ID = _SCAN + " WHERE workspace_id = $1 AND id = $2"
_ACTIVE_SCAN = _SCAN + " WHERE workspace_id = $1 AND status = ANY($2::text[])"
_ACTIVE = ("queued", "running")


def _scan(row: asyncpg.Record) -> DuplicateScan:
    fields = dict(row)
    fields["status"] = ScanStatus(fields["status"])
    fields["skipped"] = json.loads(fields["skipped"])
    return DuplicateScan(**fields)


class DuplicatesStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def contact_batches(self, workspace_id: str, size: int
                              ) -> AsyncGenerator[Sequence[asyncpg.Record], None]:
        """The workspace's live contacts, ``size`` rows at a time, from one snapshot (a
        read-only repeatable-read transaction held while iterating)."""
        async with self.conn.transaction(isolation="repeatable_read", readonly=True):
            cursor = await self.conn.cursor(SCAN_CONTACTS, workspace_id)
            while rows := await cursor.fetch(size):
                yield rows

    async def create_scan(self, scan_id: UUID, workspace_id: str, requested_by: str) -> bool:
        """A queued scan; False when the workspace already has one queued or running."""
        created = await self.conn.fetchval(
            "INSERT INTO duplicate_scans (id, workspace_id, status, requested_by)"
            " VALUES ($1, $2, 'queued', $3) ON CONFLICT DO NOTHING RETURNING 1",
            scan_id, workspace_id, requested_by,
        )
        return created is not None

    async def get(self, workspace_id: str, scan_id: UUID) -> DuplicateScan | None:
        row = await self.conn.fetchrow(
            _SCAN_BY_ID, workspace_id, scan_id,
        )
        return _scan(row) if row is not None else None

    async def active(self, workspace_id: str) -> DuplicateScan | None:
        row = await self.conn.fetchrow(
            _ACTIVE_SCAN, workspace_id, list(_ACTIVE),
        )
        return _scan(row) if row is not None else None

    async def mark_running(self, scan_id: UUID) -> None:
        await self.conn.execute(
            "UPDATE duplicate_scans SET status = 'running', started_at = now(), heartbeat_at = now()"
            " WHERE id = $1 AND status = 'queued'",
            scan_id,
        )

    async def heartbeat(self, scan_ids: Sequence[UUID]) -> None:
        await self.conn.execute(
            "UPDATE duplicate_scans SET heartbeat_at = now()"
            " WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])",
            list(scan_ids), list(_ACTIVE),
        )

    async def fail(self, scan_id: UUID, error: str) -> None:
        await self.conn.execute(
            "UPDATE duplicate_scans SET status = 'failed', error = $2, finished_at = now()"
            " WHERE id = $1 AND status = ANY($3::text[])",
            scan_id, error, list(_ACTIVE),
        )

    async def fail_stale(self, older_than: timedelta, workspace_id: str | None = None) -> int:
        """Fail the queued or running scans whose process stopped moving their heartbeat."""
        done = await self.conn.fetch(
            "UPDATE duplicate_scans SET status = 'failed', finished_at = now(),"
            " error = 'interrupted: the process running it stopped'"
            " WHERE status = ANY($1::text[]) AND heartbeat_at < now() - $2::interval"
            " AND ($3::text IS NULL OR workspace_id = $3) RETURNING id",
            list(_ACTIVE), older_than, workspace_id,
        )
        return len(done)

    async def finish(self, scan_id: UUID, result: PairingResult) -> None:
        await self.conn.execute(
            "UPDATE duplicate_scans SET status = 'done', finished_at = now(), contacts_scanned = $2,"
            " blocks_compared = $3, blocks_skipped = $4, comparisons = $5, candidates = $6,"
            " skipped = $7::jsonb WHERE id = $1",
            scan_id, result.contacts, result.blocks_compared, result.blocks_skipped,
            result.comparisons, len(result.pairs), json.dumps([s.as_dict() for s in result.skipped]),
        )

    async def save_candidates(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows made by candidate_rows()."""
        await self.conn.copy_records_to_table(
            "duplicate_candidates", columns=("scan_id", "contact_a", "contact_b", "score", "reasons"),
            records=rows,
        )

    async def drop_earlier_candidates(self, workspace_id: str, scan_id: UUID) -> None:
        """Keep only the candidates of ``scan_id`` in the workspace: earlier scans keep their
        counts, not their pairs."""
        await self.conn.execute(
            "DELETE FROM duplicate_candidates WHERE scan_id IN (SELECT id FROM duplicate_scans"
            " WHERE workspace_id = $1 AND id <> $2 AND status = 'done')",
            workspace_id, scan_id,
        )

    async def candidates(self, scan_id: UUID, after: CandidatePosition | None, limit: int
                         ) -> list[Candidate]:
        """Highest score first, then by the pair's ids (descending: one index scan backwards)."""
        query = ("SELECT contact_a, contact_b, score, reasons::text AS reasons"
                 " FROM duplicate_candidates WHERE scan_id = $1")
        args: list[Any] = [scan_id]
        if after is not None:
            query += " AND (score, contact_a, contact_b) < ($2::smallint, $3::uuid, $4::uuid)"
            args += [after.score, after.contact_a, after.contact_b]
        query += f" ORDER BY score DESC, contact_a DESC, contact_b DESC LIMIT ${len(args) + 1}"
        rows = await self.conn.fetch(query, *args, limit)
        return [Candidate(r["contact_a"], r["contact_b"], r["score"], json.loads(r["reasons"]))
                for r in rows]


def candidate_rows(scan_id: UUID, pairs: Sequence[Pair]) -> list[tuple[Any, ...]]:
    """duplicate_candidates rows for COPY: CPU work that callers may do off the event loop."""
    return [(scan_id, p.contact_a, p.contact_b, p.score, json.dumps([r.as_dict() for r in p.reasons]))
            for p in pairs]

"""The SQL of a merge: everything of the loser moves to the survivor, and the loser becomes a
redirect. Runs inside the merge's unit of work, after both rows are locked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class MergeRecord:
    loser_id: UUID
    survivor_id: UUID
    actor: str
    at: datetime
    choices: dict[str, str]


async def absorb(conn: asyncpg.Connection, workspace_id: str, survivor: UUID, loser: UUID) -> None:
    """Move the loser's identities, company links, timeline and activity to the survivor."""
    await conn.execute("UPDATE identities SET contact_id = $2 WHERE workspace_id = $3 AND contact_id = $1",
                       loser, survivor, workspace_id)
    await conn.execute(
        "INSERT INTO contact_companies (workspace_id, contact_id, company_id, role)"
        " SELECT workspace_id, $2, company_id, role FROM contact_companies WHERE contact_id = $1"
        " ON CONFLICT DO NOTHING", loser, survivor,
    )
    await conn.execute("DELETE FROM contact_companies WHERE contact_id = $1", loser)
    await conn.execute(
        "UPDATE timeline_entries SET contact_id = $2 WHERE workspace_id = $3 AND contact_id = $1",
        loser, survivor, workspace_id,
    )
    await conn.execute(
        "UPDATE contacts s SET interaction_count = s.interaction_count + l.interaction_count,"
        " last_seen_at = GREATEST(s.last_seen_at, l.last_seen_at),"
        " created_at = LEAST(s.created_at, l.created_at)"
        " FROM contacts l WHERE s.id = $1 AND l.id = $2", survivor, loser,
    )
    # The loser is now a redirect, and so is everything that redirected to it.
    await conn.execute(
        "UPDATE contacts SET merged_into = $1, search_text = '', updated_at = now(), version = version + 1"
        " WHERE workspace_id = $3 AND (id = $2 OR merged_into = $2)", survivor, loser, workspace_id,
    )


async def record(conn: asyncpg.Connection, workspace_id: str, survivor: UUID, loser: UUID, actor: str,
                 choices: dict[str, str], loser_snapshot: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO merges (workspace_id, loser_id, survivor_id, actor, choices, loser)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)",
        workspace_id, loser, survivor, actor, json.dumps(choices), json.dumps(loser_snapshot),
    )
    # Earlier merges into the loser now count as merges into the survivor.
    await conn.execute("UPDATE merges SET survivor_id = $1 WHERE workspace_id = $3 AND survivor_id = $2",
                       survivor, loser, workspace_id)


async def history(conn: asyncpg.Connection, workspace_id: str, contact_id: UUID) -> list[MergeRecord]:
    rows = await conn.fetch(
        "SELECT loser_id, survivor_id, actor, at, choices::text AS choices FROM merges"
        " WHERE workspace_id = $1 AND (survivor_id = $2 OR loser_id = $2) ORDER BY at DESC",
        workspace_id, contact_id,
    )
    return [MergeRecord(r["loser_id"], r["survivor_id"], r["actor"], r["at"], json.loads(r["choices"]))
            for r in rows]


async def absorbed(conn: asyncpg.Connection, workspace_id: str, contact_id: UUID) -> list[UUID]:
    """The ids that redirect to ``contact_id``."""
    rows = await conn.fetch("SELECT id FROM contacts WHERE workspace_id = $1 AND merged_into = $2",
                            workspace_id, contact_id)
    return [r["id"] for r in rows]

"""The audit log: every write with who did it and the record before and after."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class AuditEntry:
    id: int
    action: str
    actor: str
    at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None


async def record(
    conn: asyncpg.Connection, workspace_id: str, entity: str, entity_id: object, action: str, actor: str,
    before: dict[str, Any] | None, after: dict[str, Any] | None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (workspace_id, entity, entity_id, action, actor, before, after)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb)",
        workspace_id, entity, str(entity_id), action, actor,
        None if before is None else json.dumps(before), None if after is None else json.dumps(after),
    )


async def record_many(
    conn: asyncpg.Connection, workspace_id: str, entity: str, actor: str,
    entries: Sequence[tuple[object, str, dict[str, Any] | None, dict[str, Any] | None]],
) -> None:
    """Many writes by one actor at once (an import's batch), with one COPY: each entry is
    (entity id, action, before, after)."""
    await conn.copy_records_to_table(
        "audit_log", columns=("workspace_id", "entity", "entity_id", "action", "actor", "before", "after"),
        records=[(workspace_id, entity, str(entity_id), action, actor,
                  None if before is None else json.dumps(before),
                  None if after is None else json.dumps(after))
                 for entity_id, action, before, after in entries],
    )


async def history(
    conn: asyncpg.Connection, workspace_id: str, entity: str, entity_id: object, before_id: int | None,
    limit: int,
) -> list[AuditEntry]:
    rows = await conn.fetch(
        "SELECT id, action, actor, at, before::text AS before, after::text AS after FROM audit_log"
        " WHERE workspace_id = $1 AND entity = $2 AND entity_id = $3 AND id < $4"
        " ORDER BY id DESC LIMIT $5",
        workspace_id, entity, str(entity_id), before_id or 2**62, limit,
    )
    return [AuditEntry(r["id"], r["action"], r["actor"], r["at"],
                       json.loads(r["before"]) if r["before"] else None,
                       json.loads(r["after"]) if r["after"] else None) for r in rows]


async def forget(conn: asyncpg.Connection, workspace_id: str, entity: str, entity_ids: list[str]) -> None:
    """Erasure: keep that writes happened and by whom, drop what they contained."""
    await conn.execute(
        "UPDATE audit_log SET before = NULL, after = NULL"
        " WHERE workspace_id = $1 AND entity = $2 AND entity_id = ANY($3::text[])",
        workspace_id, entity, entity_ids,
    )

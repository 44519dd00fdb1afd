"""SQL of macros. Every query is scoped by workspace."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from crm_ticketing.domain.replies import MacroNameTaken


@dataclass(frozen=True)
class Macro:
    id: UUID
    name: str
    body: str
    internal: bool
    actions: dict[str, Any]
    version: int
    created_by: str
    created_at: datetime
    updated_at: datetime


_COLUMNS = "id, name, body, internal, actions::text AS actions, version, created_by, created_at, updated_at"


def _macro(row: Any) -> Macro:
    fields = dict(row)
    fields["actions"] = json.loads(fields["actions"])
    return Macro(**fields)


class MacrosStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def insert(self, workspace_id: str, macro_id: UUID, values: dict[str, Any], author: str) -> Macro:
        try:
            row = await self.conn.fetchrow(
                "INSERT INTO macros (id, workspace_id, name, body, internal, actions, created_by)"  # noqa: S608
                f" VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7) RETURNING {_COLUMNS}",
                macro_id, workspace_id, values["name"], values["body"], values["internal"],
                json.dumps(values["actions"]), author)
        except asyncpg.UniqueViolationError as exc:
            raise MacroNameTaken(values["name"]) from exc
        return _macro(row)

    async def get(self, workspace_id: str, macro_id: UUID, *, for_update: bool = False) -> Macro | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self.conn.fetchrow(
            f"SELECT {_COLUMNS} FROM macros WHERE workspace_id = $1 AND id = $2{lock}",  # noqa: S608
            workspace_id, macro_id)
        return _macro(row) if row else None

    async def update(self, workspace_id: str, macro: Macro) -> Macro:
        try:
            row = await self.conn.fetchrow(
                "UPDATE macros SET name = $3, body = $4, internal = $5, actions = $6::jsonb,"  # noqa: S608
                " version = version + 1, updated_at = now() WHERE workspace_id = $1 AND id = $2"
                f" RETURNING {_COLUMNS}",
                workspace_id, macro.id, macro.name, macro.body, macro.internal, json.dumps(macro.actions))
        except asyncpg.UniqueViolationError as exc:
            raise MacroNameTaken(macro.name) from exc
        return _macro(row)

    async def delete(self, workspace_id: str, macro_id: UUID) -> None:
        await self.conn.execute("DELETE FROM macros WHERE workspace_id = $1 AND id = $2",
                                workspace_id, macro_id)

    async def list(self, workspace_id: str, after: tuple[str, UUID] | None, limit: int) -> list[Macro]:
        """By name, then id."""
        name, macro_id = after or ("", UUID(int=0))
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM macros WHERE workspace_id = $1"  # noqa: S608
            " AND ($2::boolean OR (name, id) > ($3, $4)) ORDER BY name, id LIMIT $5",
            workspace_id, after is None, name, macro_id, limit)
        return [_macro(r) for r in rows]

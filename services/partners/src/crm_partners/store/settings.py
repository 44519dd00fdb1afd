"""Workspaces' opt-in to public events (``workspace_settings``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class WorkspaceSettings:
    workspace_id: str
    enabled: bool
    # Empty: every domain.
    domains: tuple[str, ...]
    hash_key: bytes
    version: int
    updated_at: datetime | None

    def publishes(self, domain: str) -> bool:
        return self.enabled and (not self.domains or domain in self.domains)


def _settings(row: asyncpg.Record) -> WorkspaceSettings:
    return WorkspaceSettings(row["workspace_id"], row["enabled"], tuple(row["domains"]),
                             bytes(row["hash_key"]), row["version"], row["updated_at"])


class SettingsStore:
    def __init__(self, conn: asyncpg.Connection | asyncpg.Pool) -> None:
        self.conn = conn

    async def get(self, workspace_id: str) -> WorkspaceSettings | None:
        row = await self.conn.fetchrow("SELECT * FROM workspace_settings WHERE workspace_id = $1",
                                       workspace_id)
        return _settings(row) if row else None

    async def of(self, workspace_ids: Sequence[str]) -> dict[str, WorkspaceSettings]:
        rows = await self.conn.fetch("SELECT * FROM workspace_settings WHERE workspace_id = ANY($1::text[])",
                                     list(set(workspace_ids)))
        return {row["workspace_id"]: _settings(row) for row in rows}

    async def put(self, workspace_id: str, enabled: bool, domains: Sequence[str],
                  expected_version: int) -> WorkspaceSettings | None:
        """Write the settings if their version is ``expected_version`` (0: none yet); None when
        it is not. The hash key is made once, with the first settings, and never changes: a
        partner's stored hashes keep matching."""
        if expected_version == 0:
            row = await self.conn.fetchrow(
                "INSERT INTO workspace_settings (workspace_id, enabled, domains, hash_key)"
                " VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (workspace_id) DO NOTHING RETURNING *",
                workspace_id, enabled, list(domains), os.urandom(32))
        else:
            row = await self.conn.fetchrow(
                "UPDATE workspace_settings SET enabled = $2, domains = $3, version = version + 1,"
                " updated_at = now()"
                " WHERE workspace_id = $1 AND version = $4 RETURNING *",
                workspace_id, enabled, list(domains), expected_version)
        return _settings(row) if row else None

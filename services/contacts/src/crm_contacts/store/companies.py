"""Companies' SQL. Every query is scoped by workspace."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import asyncpg

from crm_contacts.domain.model import Company

_COLUMNS = ("id, workspace_id, name, domains, industry, size, custom::text AS custom, version, created_at,"
            " updated_at")


def _company(row: asyncpg.Record) -> Company:
    return Company(id=row["id"], workspace_id=row["workspace_id"], name=row["name"],
                   domains=tuple(row["domains"]), industry=row["industry"], size=row["size"],
                   custom=json.loads(row["custom"]), version=row["version"], created_at=row["created_at"],
                   updated_at=row["updated_at"])


async def insert(
    conn: asyncpg.Connection, workspace_id: str, company_id: UUID, values: dict[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO companies (id, workspace_id, name, domains, industry, size, custom)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        company_id, workspace_id, values["name"], list(values.get("domains", ())), values.get("industry"),
        values.get("size"), json.dumps(values.get("custom", {})),
    )


async def update(conn: asyncpg.Connection, workspace_id: str, company: Company) -> int:
    version: int = await conn.fetchval(
        "UPDATE companies SET name = $3, domains = $4, industry = $5, size = $6, custom = $7::jsonb,"
        " version = version + 1, updated_at = now() WHERE workspace_id = $1 AND id = $2 RETURNING version",
        workspace_id, company.id, company.name, list(company.domains), company.industry, company.size,
        json.dumps(company.custom),
    )
    return version


async def get(conn: asyncpg.Connection, workspace_id: str, company_id: UUID, *,
              for_update: bool = False) -> Company | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM companies WHERE workspace_id = $1 AND id = $2"  # noqa: S608
        f"{' FOR UPDATE' if for_update else ''}",
        workspace_id, company_id,
    )
    return None if row is None else _company(row)


async def existing(conn: asyncpg.Connection, workspace_id: str, ids: list[UUID]) -> set[UUID]:
    rows = await conn.fetch("SELECT id FROM companies WHERE workspace_id = $1 AND id = ANY($2::uuid[])",
                            workspace_id, ids)
    return {r["id"] for r in rows}


async def delete(conn: asyncpg.Connection, workspace_id: str, company_id: UUID) -> list[UUID]:
    """Delete the company; returns the contacts that were linked to it."""
    linked = await linked_contacts(conn, company_id)
    await conn.execute("DELETE FROM companies WHERE workspace_id = $1 AND id = $2", workspace_id, company_id)
    return linked


async def linked_contacts(conn: asyncpg.Connection, company_id: UUID) -> list[UUID]:
    return [r["contact_id"] for r in await conn.fetch(
        "SELECT contact_id FROM contact_companies WHERE company_id = $1", company_id)]


async def page(conn: asyncpg.Connection, workspace_id: str, query: str | None, domain: str | None,
               after: tuple[str, UUID] | None, limit: int) -> list[Company]:
    """Companies by name (case-insensitive), optionally whose name starts with ``query`` or that
    own ``domain``."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM companies WHERE workspace_id = $1"  # noqa: S608
        " AND ($2::text IS NULL OR lower(name) LIKE lower($2) || '%')"
        " AND ($3::text IS NULL OR domains @> ARRAY[$3]::text[])"
        " AND ($4::text IS NULL OR (lower(name), id) > ($4, $5::uuid))"
        " ORDER BY lower(name), id LIMIT $6",
        workspace_id, query.replace("%", "").replace("_", "\\_") if query else None, domain,
        after[0] if after else None, after[1] if after else None, limit,
    )
    return [_company(r) for r in rows]

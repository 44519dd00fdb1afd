"""Custom field definitions per workspace."""

from __future__ import annotations

import asyncpg

from crm_contacts.domain.fields import Entity
from crmkit.fields import FieldDefinition, FieldType


async def definitions(
    conn: asyncpg.Connection, workspace_id: str, entity: Entity
) -> dict[str, FieldDefinition]:
    rows = await conn.fetch(
        "SELECT key, label, type, options FROM field_definitions WHERE workspace_id = $1 AND entity = $2"
        " ORDER BY created_at, key",
        workspace_id, entity.value,
    )
    return {r["key"]: FieldDefinition(entity, r["key"], r["label"], FieldType(r["type"]), tuple(r["options"]))
            for r in rows}


async def insert(conn: asyncpg.Connection, workspace_id: str, definition: FieldDefinition) -> bool:
    """False when the key is already defined for that entity."""
    return await conn.fetchval(
        "INSERT INTO field_definitions (workspace_id, entity, key, label, type, options)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true",
        workspace_id, str(definition.entity), definition.key, definition.label, definition.type.value,
        list(definition.options),
    ) is not None


async def delete(conn: asyncpg.Connection, workspace_id: str, entity: Entity, key: str) -> bool:
    return await conn.fetchval(
        "DELETE FROM field_definitions WHERE workspace_id = $1 AND entity = $2 AND key = $3 RETURNING true",
        workspace_id, entity.value, key,
    ) is not None

"""SQL for the definitions of tickets' custom fields."""

from __future__ import annotations

import asyncpg

from crmkit.fields import FieldDefinition, FieldType

ENTITY = "ticket"


async def definitions(conn: asyncpg.Connection, workspace_id: str) -> dict[str, FieldDefinition]:
    rows = await conn.fetch(
        "SELECT key, label, type, options FROM ticket_field_definitions WHERE workspace_id = $1"
        " ORDER BY created_at, key", workspace_id)
    return {r["key"]: FieldDefinition(ENTITY, r["key"], r["label"], FieldType(r["type"]), tuple(r["options"]))
            for r in rows}


async def insert(conn: asyncpg.Connection, workspace_id: str, definition: FieldDefinition) -> bool:
    """False when the key is defined already."""
    return await conn.fetchval(
        "INSERT INTO ticket_field_definitions (workspace_id, key, label, type, options)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
        workspace_id, definition.key, definition.label, definition.type.value, list(definition.options),
    ) is not None


async def delete(conn: asyncpg.Connection, workspace_id: str, key: str) -> bool:
    """The field's values stay on the tickets but are never read back (crmkit.fields)."""
    return await conn.fetchval(
        "DELETE FROM ticket_field_definitions WHERE workspace_id = $1 AND key = $2 RETURNING true",
        workspace_id, key,
    ) is not None

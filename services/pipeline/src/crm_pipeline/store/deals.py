"""SQL for deals, their participants, line items and stage history, and the definitions of
their custom fields. Every query is scoped by workspace; deleted deals are never read back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from crm_pipeline.domain.model import Deal, DealStatus, LineItem, Participant, StageChange
from crmkit.fields import FieldDefinition, FieldType

ENTITY = "deal"
_COLUMNS = ("id, workspace_id, pipeline_id, stage_id, title, amount_minor, currency, expected_close_date,"
            " owner_id, contact_id, company_id, status, close_reason_id, close_note, closed_at,"
            " stage_entered_at, last_activity_at, custom_fields::text AS custom_fields, tags, version,"
            " created_at, updated_at")


@dataclass(frozen=True)
class DealFilter:
    pipeline_id: UUID | None = None
    stage_id: UUID | None = None
    owner_id: str | None = None
    status: DealStatus | None = None


@dataclass(frozen=True)
class StageSum:
    """Open and closed deals of one stage in one currency: how many, and their amounts added."""

    stage_id: UUID
    currency: str
    count: int
    amount_minor: int


class DealsStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def get(self, workspace_id: str, deal_id: UUID, *, lock: bool = False) -> Deal | None:
        row = await self.conn.fetchrow(
            f"SELECT {_COLUMNS} FROM deals WHERE workspace_id = $1 AND id = $2"  # noqa: S608
            " AND deleted_at IS NULL" + (" FOR UPDATE" if lock else ""), workspace_id, deal_id)
        if row is None:
            return None
        [deal] = await self._with_children(workspace_id, [row])
        return deal

    async def _with_children(self, workspace_id: str, rows: Sequence[Any]) -> list[Deal]:
        ids = [r["id"] for r in rows]
        people = await self.conn.fetch(
            "SELECT deal_id, contact_id, role FROM deal_participants WHERE workspace_id = $1"
            " AND deal_id = ANY($2::uuid[]) ORDER BY deal_id, contact_id", workspace_id, ids)
        items = await self.conn.fetch(
            "SELECT * FROM deal_line_items WHERE workspace_id = $1 AND deal_id = ANY($2::uuid[])"
            " ORDER BY deal_id, position", workspace_id, ids)
        deals = []
        for row in rows:
            fields = dict(row)
            fields["status"] = DealStatus(fields["status"])
            fields["currency"] = fields["currency"].strip()
            fields["custom_fields"] = json.loads(fields["custom_fields"])
            fields["tags"] = tuple(fields["tags"])
            fields["participants"] = tuple(Participant(p["contact_id"], p["role"])
                                           for p in people if p["deal_id"] == row["id"])
            fields["line_items"] = tuple(
                LineItem(i["product"], i["quantity"], i["unit_price_minor"], i["discount_minor"])
                for i in items if i["deal_id"] == row["id"])
            deals.append(Deal(**fields))
        return deals

    async def insert(self, deal: Deal) -> Deal:
        await self.conn.execute(
            "INSERT INTO deals (id, workspace_id, pipeline_id, stage_id, title, amount_minor, currency,"
            " expected_close_date, owner_id, contact_id, company_id, custom_fields, tags, stage_entered_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14)",
            deal.id, deal.workspace_id, deal.pipeline_id, deal.stage_id, deal.title, deal.amount_minor,
            deal.currency, deal.expected_close_date, deal.owner_id, deal.contact_id, deal.company_id,
            json.dumps(deal.custom_fields), list(deal.tags), deal.stage_entered_at)
        await self._replace_children(deal)
        found = await self.get(deal.workspace_id, deal.id)
        assert found is not None
        return found

    async def update(self, deal: Deal, *, children: bool = True) -> Deal:
        """Write the deal's fields as they are now, one version up."""
        await self.conn.execute(
            "UPDATE deals SET pipeline_id = $3, stage_id = $4, title = $5, amount_minor = $6, currency = $7,"
            " expected_close_date = $8, owner_id = $9, contact_id = $10, company_id = $11, status = $12,"
            " close_reason_id = $13, close_note = $14, closed_at = $15, stage_entered_at = $16,"
            " custom_fields = $17::jsonb, tags = $18, version = version + 1, updated_at = now()"
            " WHERE workspace_id = $1 AND id = $2",
            deal.workspace_id, deal.id, deal.pipeline_id, deal.stage_id, deal.title, deal.amount_minor,
            deal.currency, deal.expected_close_date, deal.owner_id, deal.contact_id, deal.company_id,
            deal.status.value, deal.close_reason_id, deal.close_note, deal.closed_at, deal.stage_entered_at,
            json.dumps(deal.custom_fields), list(deal.tags))
        if children:
            await self._replace_children(deal)
        found = await self.get(deal.workspace_id, deal.id)
        assert found is not None
        return found

    async def _replace_children(self, deal: Deal) -> None:
        await self.conn.execute("DELETE FROM deal_participants WHERE workspace_id = $1 AND deal_id = $2",
                                deal.workspace_id, deal.id)
        await self.conn.execute("DELETE FROM deal_line_items WHERE workspace_id = $1 AND deal_id = $2",
                                deal.workspace_id, deal.id)
        await self.conn.executemany(
            "INSERT INTO deal_participants (workspace_id, deal_id, contact_id, role) VALUES ($1, $2, $3, $4)",
            [(deal.workspace_id, deal.id, p.contact_id, p.role) for p in deal.participants])
        await self.conn.executemany(
            "INSERT INTO deal_line_items (workspace_id, deal_id, position, product, quantity,"
            " unit_price_minor, discount_minor) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [(deal.workspace_id, deal.id, index, i.product, i.quantity, i.unit_price_minor, i.discount_minor)
             for index, i in enumerate(deal.line_items)])

    async def delete(self, workspace_id: str, deal_id: UUID) -> None:
        """Soft: the row stays for history and reports' past periods, never read back here."""
        await self.conn.execute(
            "UPDATE deals SET deleted_at = now(), version = version + 1, updated_at = now()"
            " WHERE workspace_id = $1 AND id = $2", workspace_id, deal_id)

    async def page(self, workspace_id: str, where: DealFilter, after: UUID | None, limit: int) -> list[Deal]:
        """Deals oldest first (ids are UUIDv7), after the deal ``after``."""
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM deals WHERE workspace_id = $1 AND deleted_at IS NULL"  # noqa: S608
            " AND ($2::uuid IS NULL OR pipeline_id = $2) AND ($3::uuid IS NULL OR stage_id = $3)"
            " AND ($4::text IS NULL OR owner_id = $4) AND ($5::text IS NULL OR status = $5)"
            " AND ($6::uuid IS NULL OR id > $6) ORDER BY id LIMIT $7",
            workspace_id, where.pipeline_id, where.stage_id, where.owner_id,
            where.status.value if where.status else None, after, limit)
        return await self._with_children(workspace_id, rows)

    async def stage_sums(self, workspace_id: str, pipeline_id: UUID) -> list[StageSum]:
        rows = await self.conn.fetch(
            "SELECT stage_id, currency, count(*) AS n, sum(amount_minor) AS total FROM deals"
            " WHERE workspace_id = $1 AND pipeline_id = $2 AND deleted_at IS NULL"
            " GROUP BY stage_id, currency ORDER BY stage_id, currency", workspace_id, pipeline_id)
        return [StageSum(r["stage_id"], r["currency"].strip(), r["n"], int(r["total"])) for r in rows]

    async def open_in_stage(self, workspace_id: str, stage_id: UUID) -> list[Deal]:
        """The stage's open deals, locked: they are about to move."""
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM deals WHERE workspace_id = $1 AND stage_id = $2"  # noqa: S608
            " AND status = 'open'"
            " AND deleted_at IS NULL ORDER BY id FOR UPDATE", workspace_id, stage_id)
        return await self._with_children(workspace_id, rows)

    async def count_open(self, workspace_id: str, *, stage_id: UUID | None = None,
                         pipeline_id: UUID | None = None) -> int:
        count: int = await self.conn.fetchval(
            "SELECT count(*) FROM deals WHERE workspace_id = $1 AND status = 'open' AND deleted_at IS NULL"
            " AND ($2::uuid IS NULL OR stage_id = $2) AND ($3::uuid IS NULL OR pipeline_id = $3)",
            workspace_id, stage_id, pipeline_id)
        return count

    # --- stage history ---

    async def record_stage_change(self, workspace_id: str, change: StageChange) -> None:
        await self.conn.execute(
            "INSERT INTO deal_stage_changes (workspace_id, deal_id, from_stage_id, to_stage_id, at, actor,"
            " seconds_in_from) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            workspace_id, change.deal_id, change.from_stage_id, change.to_stage_id, change.at, change.actor,
            change.seconds_in_from)

    async def stage_history(self, workspace_id: str, deal_id: UUID) -> list[StageChange]:
        rows = await self.conn.fetch(
            "SELECT deal_id, from_stage_id, to_stage_id, at, actor, seconds_in_from FROM deal_stage_changes"
            " WHERE workspace_id = $1 AND deal_id = $2 ORDER BY id LIMIT 10000", workspace_id, deal_id)
        return [StageChange(**dict(r)) for r in rows]

    # --- custom field definitions ---

    async def field_definitions(self, workspace_id: str) -> dict[str, FieldDefinition]:
        rows = await self.conn.fetch(
            "SELECT key, label, type, options FROM deal_field_definitions WHERE workspace_id = $1"
            " ORDER BY created_at, key", workspace_id)
        return {r["key"]: FieldDefinition(ENTITY, r["key"], r["label"], FieldType(r["type"]),
                                          tuple(r["options"])) for r in rows}

    async def define_field(self, workspace_id: str, definition: FieldDefinition) -> bool:
        """False when the key is defined already."""
        return await self.conn.fetchval(
            "INSERT INTO deal_field_definitions (workspace_id, key, label, type, options)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
            workspace_id, definition.key, definition.label, definition.type.value, list(definition.options),
        ) is not None

    async def remove_field(self, workspace_id: str, key: str) -> bool:
        """The field's values stay on the deals but are never read back (crmkit.fields)."""
        return await self.conn.fetchval(
            "DELETE FROM deal_field_definitions WHERE workspace_id = $1 AND key = $2 RETURNING true",
            workspace_id, key,
        ) is not None

"""SQL for pipelines, their stages, close reasons, the base currency and exchange rates.
Every query is scoped by workspace."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from crm_pipeline.domain.model import CloseReason, DealStatus, Pipeline, Stage, StageKind
from crm_pipeline.domain.money import DEFAULT_BASE_CURRENCY


def _stage(row: Any) -> Stage:
    return Stage(id=row["id"], pipeline_id=row["pipeline_id"], name=row["name"], position=row["position"],
                 probability=row["probability"], kind=StageKind(row["kind"]),
                 rotting_days=row["rotting_days"], archived=row["archived"])


def _reason(row: Any) -> CloseReason:
    return CloseReason(id=row["id"], kind=DealStatus(row["kind"]), label=row["label"],
                       archived=row["archived"])


class PipelinesStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # --- pipelines and stages ---

    async def get(self, workspace_id: str, pipeline_id: UUID, *, lock: bool = False,
                  share: bool = False) -> Pipeline | None:
        """The pipeline with every stage (archived ones too) in board order. ``lock`` holds the
        pipeline row until the transaction ends, so stage edits do not interleave; ``share``
        keeps its stages as read (deal writes share it, stage edits wait for them)."""
        row = await self.conn.fetchrow(
            "SELECT * FROM pipelines WHERE workspace_id = $1 AND id = $2"  # noqa: S608
            + (" FOR UPDATE" if lock else " FOR SHARE" if share else ""),
            workspace_id, pipeline_id)
        if row is None:
            return None
        stages = await self.conn.fetch(
            "SELECT * FROM stages WHERE workspace_id = $1 AND pipeline_id = $2"
            " ORDER BY archived, position, id",
            workspace_id, pipeline_id)
        return self._pipeline(row, stages)

    async def all(self, workspace_id: str, include_archived: bool = False) -> list[Pipeline]:
        rows = await self.conn.fetch(
            "SELECT * FROM pipelines WHERE workspace_id = $1 AND (NOT archived OR $2) ORDER BY position, id",
            workspace_id, include_archived)
        stages = await self.conn.fetch(
            "SELECT * FROM stages WHERE workspace_id = $1 AND pipeline_id = ANY($2::uuid[])"
            " ORDER BY archived, position, id", workspace_id, [r["id"] for r in rows])
        return [self._pipeline(r, [s for s in stages if s["pipeline_id"] == r["id"]]) for r in rows]

    @staticmethod
    def _pipeline(row: Any, stages: Sequence[Any]) -> Pipeline:
        return Pipeline(id=row["id"], workspace_id=row["workspace_id"], name=row["name"],
                        position=row["position"], stages=tuple(_stage(s) for s in stages),
                        version=row["version"],
                        archived=row["archived"], created_at=row["created_at"], updated_at=row["updated_at"])

    async def insert(self, pipeline: Pipeline) -> None:
        await self.conn.execute(
            "INSERT INTO pipelines (id, workspace_id, name, position)"
            " VALUES ($1, $2, $3,"
            " (SELECT coalesce(max(position) + 1, 0) FROM pipelines WHERE workspace_id = $2))",
            pipeline.id, pipeline.workspace_id, pipeline.name)
        for stage in pipeline.stages:
            await self.insert_stage(pipeline.workspace_id, stage)

    async def insert_stage(self, workspace_id: str, stage: Stage) -> None:
        await self.conn.execute(
            "INSERT INTO stages (id, workspace_id, pipeline_id, name, position, probability, kind,"
            " rotting_days)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            stage.id, workspace_id, stage.pipeline_id, stage.name, stage.position, stage.probability,
            stage.kind.value, stage.rotting_days)

    async def update_stage(self, workspace_id: str, stage: Stage) -> None:
        await self.conn.execute(
            "UPDATE stages SET name = $3, position = $4, probability = $5, rotting_days = $6, archived = $7"
            " WHERE workspace_id = $1 AND id = $2",
            workspace_id, stage.id, stage.name, stage.position, stage.probability, stage.rotting_days,
            stage.archived)

    async def touch(self, workspace_id: str, pipeline_id: UUID, *, name: str | None = None,
                    archived: bool | None = None) -> int:
        """A new version of the pipeline (its name or stages changed); returns the version."""
        version: int = await self.conn.fetchval(
            "UPDATE pipelines SET name = coalesce($3, name), archived = coalesce($4, archived),"
            " version = version + 1, updated_at = now() WHERE workspace_id = $1 AND id = $2"
            " RETURNING version",
            workspace_id, pipeline_id, name, archived)
        return version

    async def stage_of(self, workspace_id: str, stage_id: UUID) -> Stage | None:
        row = await self.conn.fetchrow("SELECT * FROM stages WHERE workspace_id = $1 AND id = $2",
                                       workspace_id, stage_id)
        return None if row is None else _stage(row)

    # --- close reasons ---

    async def reasons(self, workspace_id: str) -> list[CloseReason]:
        rows = await self.conn.fetch(
            "SELECT * FROM close_reasons WHERE workspace_id = $1 ORDER BY kind, created_at, id", workspace_id)
        return [_reason(r) for r in rows]

    async def insert_reason(self, workspace_id: str, reason: CloseReason) -> None:
        await self.conn.execute(
            "INSERT INTO close_reasons (id, workspace_id, kind, label) VALUES ($1, $2, $3, $4)",
            reason.id, workspace_id, reason.kind.value, reason.label)

    async def update_reason(self, workspace_id: str, reason_id: UUID, label: str | None,
                            archived: bool | None) -> CloseReason | None:
        row = await self.conn.fetchrow(
            "UPDATE close_reasons SET label = coalesce($3, label), archived = coalesce($4, archived)"
            " WHERE workspace_id = $1 AND id = $2 RETURNING *", workspace_id, reason_id, label, archived)
        return None if row is None else _reason(row)

    # --- currency ---

    async def base_currency(self, workspace_id: str) -> str:
        found = await self.conn.fetchval(
            "SELECT base_currency FROM workspace_currency WHERE workspace_id = $1", workspace_id)
        return str(found) if found else DEFAULT_BASE_CURRENCY

    async def set_base_currency(self, workspace_id: str, currency: str) -> None:
        await self.conn.execute(
            "INSERT INTO workspace_currency (workspace_id, base_currency) VALUES ($1, $2)"
            " ON CONFLICT (workspace_id) DO UPDATE SET base_currency = $2, updated_at = now()",
            workspace_id, currency)

    async def set_rate(self, workspace_id: str, currency: str, on: date, rate: Decimal) -> None:
        await self.conn.execute(
            "INSERT INTO exchange_rates (workspace_id, currency, valid_on, rate) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (workspace_id, currency, valid_on) DO UPDATE SET rate = $4",
            workspace_id, currency, on, rate)

    async def rates_on(self, workspace_id: str, currencies: Sequence[str], on: date
                       ) -> dict[str, dict[date, Decimal]]:
        """Per currency, the rate in force on ``on`` (the latest dated on or before it)."""
        rows = await self.conn.fetch(
            "SELECT DISTINCT ON (currency) currency, valid_on, rate FROM exchange_rates"
            " WHERE workspace_id = $1 AND currency = ANY($2::text[]) AND valid_on <= $3"
            " ORDER BY currency, valid_on DESC", workspace_id, list(currencies), on)
        return {r["currency"]: {r["valid_on"]: r["rate"]} for r in rows}

    async def rates(self, workspace_id: str, currency: str) -> list[tuple[date, Decimal]]:
        rows = await self.conn.fetch(
            "SELECT valid_on, rate FROM exchange_rates WHERE workspace_id = $1 AND currency = $2"
            " ORDER BY valid_on DESC LIMIT 1000", workspace_id, currency)
        return [(r["valid_on"], r["rate"]) for r in rows]

"""Pipelines and their stages, close reasons, the base currency and exchange rates: the
workspace's sales setup. Edits never strand a deal: a stage with open deals is archived only
with a stage to move them to, in the same transaction, each move recorded and published."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from crm_pipeline import wire
from crm_pipeline.domain import deals as rules
from crm_pipeline.domain.errors import Conflict, FieldError, InvalidFields, NotFound, VersionMismatch
from crm_pipeline.domain.model import CloseReason, DealStatus, Pipeline, Stage
from crm_pipeline.domain.money import is_currency
from crm_pipeline.store.deals import DealsStore
from crm_pipeline.store.pipelines import PipelinesStore
from crmkit.ids import uuid7
from crmkit.postgres import PgDatabase

MAX_PIPELINES = 100
MAX_REASONS = 200


class Pipelines:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def create(self, workspace_id: str, name: str, stages: list[rules.StageDraft]) -> Pipeline:
        errors = rules.check_new_pipeline(name, stages)
        if errors:
            raise InvalidFields(errors)
        pipeline_id = uuid7()
        pipeline = Pipeline(pipeline_id, workspace_id, name.strip(), 0, tuple(
            Stage(uuid7(), pipeline_id, d.name.strip(), index, d.resolved_probability(), d.kind,
                  d.rotting_days)
            for index, d in enumerate(stages)))
        async with self.db.unit_of_work() as uow:
            store = PipelinesStore(uow.conn)
            if len(await store.all(workspace_id)) >= MAX_PIPELINES:
                raise InvalidFields([FieldError("name",
                                                f"a workspace has at most {MAX_PIPELINES} pipelines")])
            await store.insert(pipeline)
            return await self._read(store, workspace_id, pipeline_id)

    async def all(self, workspace_id: str, include_archived: bool = False) -> list[Pipeline]:
        async with self.db.pool.acquire() as conn:
            return await PipelinesStore(conn).all(workspace_id, include_archived)

    async def get(self, workspace_id: str, pipeline_id: UUID) -> Pipeline:
        async with self.db.pool.acquire() as conn:
            return await self._read(PipelinesStore(conn), workspace_id, pipeline_id)

    async def rename(self, workspace_id: str, pipeline_id: UUID, name: str,
                     expected_version: int) -> Pipeline:
        errors = rules.check_pipeline_name(name)
        if errors:
            raise InvalidFields(errors)
        async with self.db.unit_of_work() as uow:
            store = PipelinesStore(uow.conn)
            await self._locked(store, workspace_id, pipeline_id, expected_version)
            await store.touch(workspace_id, pipeline_id, name=name.strip())
            return await self._read(store, workspace_id, pipeline_id)

    async def archive(self, workspace_id: str, pipeline_id: UUID, expected_version: int) -> None:
        """Only a pipeline without open deals: they would vanish from every board."""
        async with self.db.unit_of_work() as uow:
            store = PipelinesStore(uow.conn)
            await self._locked(store, workspace_id, pipeline_id, expected_version)
            open_deals = await DealsStore(uow.conn).count_open(workspace_id, pipeline_id=pipeline_id)
            if open_deals:
                raise Conflict(f"the pipeline has {open_deals} open deals; close or move them first")
            await store.touch(workspace_id, pipeline_id, archived=True)

    async def add_stage(self, workspace_id: str, pipeline_id: UUID, draft: rules.StageDraft,
                        position: int | None) -> Pipeline:
        """The stage at ``position`` among the active stages (the end when None)."""
        errors = rules.check_stage(draft)
        if errors:
            raise InvalidFields(errors)
        async with self.db.unit_of_work() as uow:
            store = PipelinesStore(uow.conn)
            pipeline = await self._locked(store, workspace_id, pipeline_id)
            active = list(pipeline.active_stages())
            errors = rules.check_stage_set([s.kind for s in active] + [draft.kind])
            if errors:
                raise InvalidFields(errors)
            stage = Stage(uuid7(), pipeline_id, draft.name.strip(), 0, draft.resolved_probability(),
                          draft.kind, draft.rotting_days)
            at = len(active) if position is None else max(0, min(position, len(active)))
            active.insert(at, stage)
            await store.insert_stage(workspace_id, replace(stage, position=at))
            await self._renumber(store, workspace_id, active)
            await store.touch(workspace_id, pipeline_id)
            return await self._read(store, workspace_id, pipeline_id)

    async def edit_stage(self, workspace_id: str, pipeline_id: UUID, stage_id: UUID,
                         changes: dict[str, Any]) -> Pipeline:
        """Name, probability and rotting_days (None: never rots); a stage's kind never changes,
        so deals won or lost stay so."""
        async with self.db.unit_of_work() as uow:
            store = PipelinesStore(uow.conn)
            pipeline = await self._locked(store, workspace_id, pipeline_id)
            stage = pipeline.stage(stage_id)
            if stage is None or stage.archived:
                raise NotFound("stage")
            edited = replace(stage, **changes)
            errors = rules.check_stage(rules.StageDraft(edited.name, edited.probability, edited.kind,
                                                        edited.rotting_days))
            if errors:
                raise InvalidFields(errors)
            await store.update_stage(workspace_id, replace(edited, name=edited.name.strip()))
            await store.touch(workspace_id, pipeline_id)
            return await self._read(store, workspace_id, pipeline_id)

    async def reorder(self, workspace_id: str, pipeline_id: UUID, stage_ids: list[UUID]) -> Pipeline:
        async with self.db.unit_of_work() as uow:
            store = PipelinesStore(uow.conn)
            pipeline = await self._locked(store, workspace_id, pipeline_id)
            errors = rules.check_reorder(pipeline, stage_ids)
            if errors:
                raise InvalidFields(errors)
            stages = [pipeline.stage(i) for i in stage_ids]
            await self._renumber(store, workspace_id, [s for s in stages if s is not None])
            await store.touch(workspace_id, pipeline_id)
            return await self._read(store, workspace_id, pipeline_id)

    async def archive_stage(self, workspace_id: str, actor: str, pipeline_id: UUID, stage_id: UUID,
                            move_to: UUID | None) -> Pipeline:
        """Archive the stage; its open deals move to ``move_to`` in the same transaction, each with
        a stage-change record and a DealStageChanged event. Closed deals keep the stage they were
        closed in (history)."""
        async with self.db.unit_of_work() as uow:
            store = PipelinesStore(uow.conn)
            deals = DealsStore(uow.conn)
            pipeline = await self._locked(store, workspace_id, pipeline_id)
            stage = pipeline.stage(stage_id)
            if stage is None or stage.archived:
                raise NotFound("stage")
            moving = await deals.open_in_stage(workspace_id, stage_id)
            target = rules.check_archive_stage(pipeline, stage, len(moving), move_to)
            now = datetime.now(UTC)
            for deal in moving:
                assert target is not None
                moved, change = rules.enter_stage(deal, target, now, actor)
                saved = await deals.update(moved, children=False)
                await deals.record_stage_change(workspace_id, change)
                uow.add(wire.deal_stage_changed(saved, target.probability, change))
            await store.update_stage(workspace_id, replace(stage, archived=True))
            remaining = [s for s in pipeline.active_stages() if s.id != stage_id]
            await self._renumber(store, workspace_id, remaining)
            await store.touch(workspace_id, pipeline_id)
            return await self._read(store, workspace_id, pipeline_id)

    @staticmethod
    async def _renumber(store: PipelinesStore, workspace_id: str, stages: list[Stage]) -> None:
        for position, stage in enumerate(stages):
            if stage.position != position:
                await store.update_stage(workspace_id, replace(stage, position=position))

    @staticmethod
    async def _locked(store: PipelinesStore, workspace_id: str, pipeline_id: UUID,
                      expected_version: int | None = None) -> Pipeline:
        pipeline = await store.get(workspace_id, pipeline_id, lock=True)
        if pipeline is None or pipeline.archived:
            raise NotFound("pipeline")
        if expected_version is not None and pipeline.version != expected_version:
            raise VersionMismatch(pipeline.version)
        return pipeline

    @staticmethod
    async def _read(store: PipelinesStore, workspace_id: str, pipeline_id: UUID) -> Pipeline:
        pipeline = await store.get(workspace_id, pipeline_id)
        if pipeline is None:
            raise NotFound("pipeline")
        return pipeline

    # --- close reasons ---

    async def reasons(self, workspace_id: str) -> list[CloseReason]:
        async with self.db.pool.acquire() as conn:
            return await PipelinesStore(conn).reasons(workspace_id)

    async def add_reason(self, workspace_id: str, kind: DealStatus, label: str) -> CloseReason:
        errors = _check_reason(kind, label)
        if errors:
            raise InvalidFields(errors)
        reason = CloseReason(uuid7(), kind, label.strip())
        async with self.db.unit_of_work() as uow:
            store = PipelinesStore(uow.conn)
            if len(await store.reasons(workspace_id)) >= MAX_REASONS:
                raise InvalidFields([FieldError("label", f"a workspace has at most {MAX_REASONS} reasons")])
            await store.insert_reason(workspace_id, reason)
        return reason

    async def edit_reason(self, workspace_id: str, reason_id: UUID, label: str | None,
                          archived: bool | None) -> CloseReason:
        """Archived reasons stay on the deals closed with them but are not offered any more."""
        if label is not None and (not label.strip() or len(label) > rules.MAX_NAME):
            raise InvalidFields([FieldError("label", f"between 1 and {rules.MAX_NAME} characters")])
        async with self.db.unit_of_work() as uow:
            reason = await PipelinesStore(uow.conn).update_reason(
                workspace_id, reason_id, label.strip() if label else None, archived)
        if reason is None:
            raise NotFound("close reason")
        return reason

    # --- currency ---

    async def base_currency(self, workspace_id: str) -> str:
        async with self.db.pool.acquire() as conn:
            return await PipelinesStore(conn).base_currency(workspace_id)

    async def set_base_currency(self, workspace_id: str, currency: str) -> str:
        if not is_currency(currency):
            raise InvalidFields([FieldError("currency", "an ISO 4217 code such as EUR")])
        async with self.db.unit_of_work() as uow:
            await PipelinesStore(uow.conn).set_base_currency(workspace_id, currency)
        return currency

    async def set_rate(self, workspace_id: str, currency: str, on: date, rate: Decimal) -> None:
        """``rate`` units of the base currency per unit of ``currency`` from ``on`` on."""
        if not is_currency(currency):
            raise InvalidFields([FieldError("currency", "an ISO 4217 code such as USD")])
        async with self.db.unit_of_work() as uow:
            await PipelinesStore(uow.conn).set_rate(workspace_id, currency, on, rate)

    async def rates(self, workspace_id: str, currency: str) -> list[tuple[date, Decimal]]:
        async with self.db.pool.acquire() as conn:
            return await PipelinesStore(conn).rates(workspace_id, currency)


def _check_reason(kind: DealStatus, label: str) -> list[FieldError]:
    errors = []
    if kind is DealStatus.OPEN:
        errors.append(FieldError("kind", "won or lost"))
    if not label.strip() or len(label) > rules.MAX_NAME:
        errors.append(FieldError("label", f"between 1 and {rules.MAX_NAME} characters"))
    return errors

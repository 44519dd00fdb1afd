"""Deals: create, edit, move through stages, win or lose, delete; the board; deals' custom
field definitions. Each write is one transaction with its events (through the outbox); a
deal's contact, company and participants are checked with contacts before anything is written,
so a deal never points at someone who does not exist."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from crm_pipeline import wire
from crm_pipeline.domain import deals as rules
from crm_pipeline.domain.errors import Conflict, FieldError, InvalidFields, NotFound, VersionMismatch
from crm_pipeline.domain.model import CloseReason, Deal, DealStatus, Participant, Pipeline, Stage, StageChange
from crm_pipeline.domain.money import convert, weighted
from crm_pipeline.store.deals import DealFilter, DealsStore, StageSum
from crm_pipeline.store.pipelines import PipelinesStore
from crmkit.contacts import ContactsClient
from crmkit.fields import FieldDefinition, check_definition
from crmkit.ids import uuid7
from crmkit.pagination import decode_cursor, encode_cursor
from crmkit.postgres import PgDatabase

MAX_FIELDS = 200


class DuplicateField(Conflict):
    def __init__(self, key: str) -> None:
        super().__init__(f"the deal field {key!r} is defined already")
        self.key = key


@dataclass(frozen=True)
class StageTotals:
    """A board column's deals: how many, their amounts in the base currency (at today's rates)
    and that sum weighted by the stage's probability. Deals in a currency without a rate are
    counted but not summed; ``unconverted`` names those currencies."""

    count: int
    amount_base_minor: int
    weighted_base_minor: int
    unconverted: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    stage: Stage
    deals: list[Deal]
    next_cursor: str | None
    totals: StageTotals


@dataclass(frozen=True)
class Board:
    pipeline: Pipeline
    base_currency: str
    columns: list[Column]


class Deals:
    def __init__(self, db: PgDatabase, contacts: ContactsClient) -> None:
        self.db = db
        self.contacts = contacts

    # --- reads ---

    async def get(self, workspace_id: str, deal_id: UUID) -> Deal:
        async with self.db.pool.acquire() as conn:
            deal = await DealsStore(conn).get(workspace_id, deal_id)
            if deal is None:
                raise NotFound("deal")
            return await self._shown(DealsStore(conn), deal)

    async def page(self, workspace_id: str, where: DealFilter, cursor: str | None, limit: int
                   ) -> tuple[list[Deal], str | None]:
        after = UUID(str(decode_cursor("deals", cursor, 1)[0])) if cursor else None
        async with self.db.pool.acquire() as conn:
            store = DealsStore(conn)
            found = await store.page(workspace_id, where, after, limit + 1)
            definitions = await store.field_definitions(workspace_id)
        items = [_defined(d, definitions) for d in found[:limit]]
        return items, encode_cursor("deals", [str(items[-1].id)]) if len(found) > limit else None

    async def stage_history(self, workspace_id: str, deal_id: UUID) -> list[StageChange]:
        async with self.db.pool.acquire() as conn:
            store = DealsStore(conn)
            if await store.get(workspace_id, deal_id) is None:
                raise NotFound("deal")
            return await store.stage_history(workspace_id, deal_id)

    # --- writes ---

    async def create(self, workspace_id: str, actor: str, pipeline_id: UUID, stage_id: UUID | None,
                     fields: Mapping[str, Any]) -> Deal:
        """A new open deal; ``fields`` are the editable fields the caller sent (title and
        currency among them)."""
        async with self.db.pool.acquire() as conn:
            pipeline = await PipelinesStore(conn).get(workspace_id, pipeline_id)
            definitions = await DealsStore(conn).field_definitions(workspace_id)
        if pipeline is None or pipeline.archived:
            raise InvalidFields([FieldError("pipeline_id", "no such pipeline in this workspace")])
        stage = rules.initial_stage(pipeline, stage_id)
        now = datetime.now(UTC)
        blank = Deal(uuid7(), workspace_id, pipeline.id, stage.id, title="", amount_minor=0,
                     currency=str(fields.get("currency", "")), owner_id=actor, stage_entered_at=now)
        deal, _ = rules.revise(blank, fields, pipeline, definitions)
        deal = await self._checked_references(workspace_id, blank, deal)
        async with self.db.unit_of_work() as uow:
            store = DealsStore(uow.conn)
            current = await PipelinesStore(uow.conn).get(workspace_id, pipeline.id, share=True)
            still = current.stage(stage.id) if current else None
            if still is None or still.archived:
                raise Conflict("the stage was archived meanwhile; try again")
            saved = await store.insert(deal)
            created = StageChange(deal.id, None, stage.id, now, actor, None)
            await store.record_stage_change(workspace_id, created)
            uow.add(wire.deal_created(saved, still.probability, actor))
        return _defined(saved, definitions)

    async def update(self, workspace_id: str, actor: str, deal_id: UUID, changes: Mapping[str, Any],
                     expected_version: int) -> Deal:
        before = await self.get(workspace_id, deal_id)
        if before.version != expected_version:
            raise VersionMismatch(before.version)
        async with self.db.pool.acquire() as conn:
            pipeline = await PipelinesStore(conn).get(workspace_id, before.pipeline_id)
            definitions = await DealsStore(conn).field_definitions(workspace_id)
        assert pipeline is not None
        revised, changed = rules.revise(before, changes, pipeline, definitions)
        if not changed:
            return before
        revised = await self._checked_references(workspace_id, before, revised)
        async with self.db.unit_of_work() as uow:
            store = DealsStore(uow.conn)
            # The version check under the lock: nothing changed the deal since it was read above.
            await self._locked(store, workspace_id, deal_id, expected_version)
            saved = await store.update(revised)
            stage = pipeline.stage(saved.stage_id)
            uow.add(wire.deal_updated(saved, stage.probability if stage else 0, changed, actor))
        return _defined(saved, definitions)

    async def delete(self, workspace_id: str, actor: str, deal_id: UUID, expected_version: int) -> None:
        async with self.db.unit_of_work() as uow:
            store = DealsStore(uow.conn)
            deal = await self._locked(store, workspace_id, deal_id, expected_version)
            await store.delete(workspace_id, deal_id)
            stage = await PipelinesStore(uow.conn).stage_of(workspace_id, deal.stage_id)
            probability = stage.probability if stage else 0
            uow.add(wire.deal_updated(replace(deal, version=deal.version + 1), probability,
                                      ["deleted"], actor))

    async def move(self, workspace_id: str, actor: str, deal_id: UUID, stage_id: UUID,
                   pipeline_id: UUID | None, expected_version: int | None) -> Deal:
        """The deal in another open stage, of its pipeline or of ``pipeline_id``; a won or lost
        deal moved to an open stage is reopened."""
        async with self.db.unit_of_work() as uow:
            store = DealsStore(uow.conn)
            deal, pipeline = await self._deal_in(store, PipelinesStore(uow.conn), workspace_id, deal_id,
                                                 expected_version, pipeline_id)
            moved, change = rules.move(deal, pipeline, stage_id, datetime.now(UTC), actor)
            if change is None:
                return await self._shown(store, deal)
            saved = await store.update(moved, children=False)
            await store.record_stage_change(workspace_id, change)
            stage = pipeline.stage(stage_id)
            assert stage is not None
            uow.add(wire.deal_stage_changed(saved, stage.probability, change))
            return await self._shown(store, saved)

    async def close(self, workspace_id: str, actor: str, deal_id: UUID, outcome: DealStatus,
                    reason_id: UUID | None, note: str | None, expected_version: int | None) -> Deal:
        """Win or lose the deal: into its pipeline's won (lost) stage, with a reason and a note."""
        async with self.db.unit_of_work() as uow:
            store = DealsStore(uow.conn)
            pipelines = PipelinesStore(uow.conn)
            deal, pipeline = await self._deal_in(store, pipelines, workspace_id, deal_id, expected_version)
            reasons = await pipelines.reasons(workspace_id)
            reason = _reason(reasons, reason_id)
            now = datetime.now(UTC)
            closed, change = rules.close(deal, pipeline, outcome, reason, reasons, note, now, actor)
            saved = await store.update(closed, children=False)
            stage = pipeline.stage(saved.stage_id)
            probability = stage.probability if stage else 0
            if change is not None:
                await store.record_stage_change(workspace_id, change)
                uow.add(wire.deal_stage_changed(saved, probability, change))
            uow.add(wire.deal_closed(saved, probability, reason, actor))
            return await self._shown(store, saved)

    # --- the board ---

    async def board(self, workspace_id: str, pipeline_id: UUID, per_stage: int) -> Board:
        """The pipeline's active stages in order, each with its first ``per_stage`` deals and its totals."""
        today = datetime.now(UTC).date()
        async with self.db.pool.acquire() as conn:
            pipelines = PipelinesStore(conn)
            store = DealsStore(conn)
            pipeline = await pipelines.get(workspace_id, pipeline_id)
            if pipeline is None or pipeline.archived:
                raise NotFound("pipeline")
            base = await pipelines.base_currency(workspace_id)
            sums = await store.stage_sums(workspace_id, pipeline_id)
            rates = await pipelines.rates_on(workspace_id, sorted({s.currency for s in sums}), today)
            definitions = await store.field_definitions(workspace_id)
            columns = []
            for stage in pipeline.active_stages():
                found = await store.page(workspace_id, DealFilter(pipeline_id, stage.id), None, per_stage + 1)
                columns.append(Column(stage, [_defined(d, definitions) for d in found[:per_stage]],
                                      _stage_cursor(stage.id, found, per_stage),
                                      stage_totals(stage, [s for s in sums if s.stage_id == stage.id], base,
                                                   {c: next(iter(r.values())) for c, r in rates.items()})))
        return Board(pipeline, base, columns)

    async def board_stage(self, workspace_id: str, pipeline_id: UUID, stage_id: UUID, cursor: str | None,
                          limit: int) -> tuple[list[Deal], str | None]:
        """The next deals of one board column."""
        after = UUID(str(decode_cursor(f"board:{stage_id}", cursor, 1)[0])) if cursor else None
        async with self.db.pool.acquire() as conn:
            pipeline = await PipelinesStore(conn).get(workspace_id, pipeline_id)
            if pipeline is None or pipeline.stage(stage_id) is None:
                raise NotFound("stage")
            store = DealsStore(conn)
            found = await store.page(workspace_id, DealFilter(pipeline_id, stage_id), after, limit + 1)
            definitions = await store.field_definitions(workspace_id)
        return [_defined(d, definitions) for d in found[:limit]], _stage_cursor(stage_id, found, limit)

    # --- custom fields ---

    async def fields(self, workspace_id: str) -> list[FieldDefinition]:
        async with self.db.pool.acquire() as conn:
            return list((await DealsStore(conn).field_definitions(workspace_id)).values())

    async def define_field(self, workspace_id: str, definition: FieldDefinition) -> FieldDefinition:
        errors = check_definition(definition)
        if errors:
            raise InvalidFields(errors)
        async with self.db.unit_of_work() as uow:
            store = DealsStore(uow.conn)
            if len(await store.field_definitions(workspace_id)) >= MAX_FIELDS:
                raise InvalidFields([FieldError("key", f"a workspace has at most {MAX_FIELDS} deal fields")])
            if not await store.define_field(workspace_id, definition):
                raise DuplicateField(definition.key)
        return definition

    async def remove_field(self, workspace_id: str, key: str) -> None:
        async with self.db.unit_of_work() as uow:
            if not await DealsStore(uow.conn).remove_field(workspace_id, key):
                raise NotFound("deal field")

    # --- helpers ---

    async def _checked_references(self, workspace_id: str, before: Deal, after: Deal) -> Deal:
        """``after`` with its new contact, company and participants checked with contacts (a merged
        contact's id replaced by its survivor's); InvalidFields naming each that does not exist.
        References the deal had already are not asked again."""
        errors: list[FieldError] = []
        contact_id = after.contact_id
        if contact_id is not None and contact_id != before.contact_id:
            contact_id = await self._contact(workspace_id, contact_id, "contact_id", errors)
        if after.company_id is not None and after.company_id != before.company_id \
                and await self.contacts.get_company(workspace_id, str(after.company_id)) is None:
            errors.append(FieldError("company_id", "no such company in this workspace"))
        known = {p.contact_id for p in before.participants}
        participants = []
        for index, person in enumerate(after.participants):
            found: UUID | None = person.contact_id
            if person.contact_id not in known:
                path = f"participants[{index}].contact_id"
                found = await self._contact(workspace_id, person.contact_id, path,
                                            errors)
            participants.append(Participant(found or person.contact_id, person.role))
        if errors:
            raise InvalidFields(errors)
        if len({p.contact_id for p in participants}) != len(participants):
            raise InvalidFields([FieldError("participants", "each contact once (merged contacts included)")])
        return replace(after, contact_id=contact_id, participants=tuple(participants))

    async def _contact(self, workspace_id: str, contact_id: UUID, field: str, errors: list[FieldError]
                       ) -> UUID | None:
        contact = await self.contacts.get_contact(workspace_id, str(contact_id))
        if contact is None:
            errors.append(FieldError(field, "no such contact in this workspace"))
            return None
        return UUID(contact.id)

    async def _deal_in(self, store: DealsStore, pipelines: PipelinesStore, workspace_id: str,
                       deal_id: UUID, expected_version: int | None,
                       pipeline_id: UUID | None = None) -> tuple[Deal, Pipeline]:
        """The deal, locked, and the pipeline it moves in (its own unless ``pipeline_id``), shared:
        the pipeline is taken first, in the order archiving a stage takes them, so the two wait
        for each other instead of deadlocking."""
        seen = await store.get(workspace_id, deal_id)
        if seen is None:
            raise NotFound("deal")
        pipeline = await pipelines.get(workspace_id, pipeline_id or seen.pipeline_id, share=True)
        if pipeline is None or pipeline.archived:
            raise InvalidFields([FieldError("pipeline_id", "no such pipeline in this workspace")])
        deal = await self._locked(store, workspace_id, deal_id, expected_version)
        if pipeline_id is None and deal.pipeline_id != pipeline.id:
            raise Conflict("the deal moved to another pipeline meanwhile; try again")
        return deal, pipeline

    @staticmethod
    async def _locked(store: DealsStore, workspace_id: str, deal_id: UUID,
                      expected_version: int | None) -> Deal:
        deal = await store.get(workspace_id, deal_id, lock=True)
        if deal is None:
            raise NotFound("deal")
        if expected_version is not None and deal.version != expected_version:
            raise VersionMismatch(deal.version)
        return deal

    @staticmethod
    async def _shown(store: DealsStore, deal: Deal) -> Deal:
        return _defined(deal, await store.field_definitions(deal.workspace_id))


def stage_totals(stage: Stage, sums: Sequence[StageSum], base: str, rates: Mapping[str, Any]) -> StageTotals:
    """A column's totals from its per-currency sums, each converted once (half to even)."""
    count = sum(s.count for s in sums)
    amount = 0
    unconverted = []
    for part in sums:
        if part.currency == base:
            amount += part.amount_minor
        elif part.currency in rates:
            amount += convert(part.amount_minor, part.currency, base, rates[part.currency])
        else:
            unconverted.append(part.currency)
    return StageTotals(count, amount, weighted(amount, stage.probability), tuple(unconverted))


def _defined(deal: Deal, definitions: Mapping[str, FieldDefinition]) -> Deal:
    return replace(deal, custom_fields={k: v for k, v in deal.custom_fields.items() if k in definitions})


def _reason(reasons: Sequence[CloseReason], reason_id: UUID | None) -> CloseReason | None:
    if reason_id is None:
        return None
    found = next((r for r in reasons if r.id == reason_id), None)
    if found is None:
        raise InvalidFields([FieldError("reason_id", "no such close reason in this workspace")])
    return found


def _stage_cursor(stage_id: UUID, found: Sequence[Deal], limit: int) -> str | None:
    return encode_cursor(f"board:{stage_id}", [str(found[limit - 1].id)]) if len(found) > limit else None


"""The rules of pipelines, stages and deals: what a valid deal is, how its amount follows its
line items, which stage moves are allowed, and what winning or losing takes. Pure: the service
loads what the rules need (the pipeline, the close reasons) and writes what they return.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from crm_pipeline.domain.errors import Conflict, FieldError, InvalidFields
from crm_pipeline.domain.model import (
    CloseReason,
    Deal,
    DealStatus,
    LineItem,
    Pipeline,
    Stage,
    StageChange,
    StageKind,
)
from crm_pipeline.domain.money import MAX_MINOR, is_currency
from crmkit.fields import FieldDefinition, validate_custom

MAX_TITLE = 300
MAX_NAME = 200
MAX_TAGS = 50
MAX_TAG = 50
MAX_LINE_ITEMS = 200
MAX_PARTICIPANTS = 100
MAX_STAGES = 50
MAX_NOTE = 2000
MAX_QUANTITY = 1_000_000_000


# --- Stages and pipelines ------------------------------------------------------------------------


@dataclass(frozen=True)
class StageDraft:
    """A stage as a caller describes it; probability defaults by kind (won 100, lost 0)."""

    name: str
    probability: int | None = None
    kind: StageKind = StageKind.OPEN
    rotting_days: int | None = None

    def resolved_probability(self) -> int:
        if self.probability is not None:
            return self.probability
        return {StageKind.WON: 100, StageKind.LOST: 0}.get(self.kind, 0)


def check_pipeline_name(name: str) -> list[FieldError]:
    if not name.strip() or len(name) > MAX_NAME:
        return [FieldError("name", f"between 1 and {MAX_NAME} characters")]
    return []


def check_stage(draft: StageDraft, prefix: str = "") -> list[FieldError]:
    errors = []
    if not draft.name.strip() or len(draft.name) > MAX_NAME:
        errors.append(FieldError(f"{prefix}name", f"between 1 and {MAX_NAME} characters"))
    probability = draft.resolved_probability()
    if not 0 <= probability <= 100:
        errors.append(FieldError(f"{prefix}probability", "between 0 and 100"))
    elif draft.kind is StageKind.WON and probability != 100:
        errors.append(FieldError(f"{prefix}probability", "a won stage's probability is 100"))
    elif draft.kind is StageKind.LOST and probability != 0:
        errors.append(FieldError(f"{prefix}probability", "a lost stage's probability is 0"))
    if draft.rotting_days is not None and not 1 <= draft.rotting_days <= 3650:
        errors.append(FieldError(f"{prefix}rotting_days", "between 1 and 3650 days, or null for never"))
    return errors


def check_stage_set(kinds: Sequence[StageKind], field: str = "stages") -> list[FieldError]:
    """A pipeline's active stages: 1 to MAX_STAGES, at least one open, at most one won and one lost."""
    errors = []
    if not 1 <= len(kinds) <= MAX_STAGES:
        errors.append(FieldError(field, f"between 1 and {MAX_STAGES} stages"))
    if StageKind.OPEN not in kinds:
        errors.append(FieldError(field, "at least one open stage"))
    for kind in (StageKind.WON, StageKind.LOST):
        if list(kinds).count(kind) > 1:
            errors.append(FieldError(field, f"at most one {kind.value} stage"))
    return errors


def check_new_pipeline(name: str, stages: Sequence[StageDraft]) -> list[FieldError]:
    errors = check_pipeline_name(name)
    for index, draft in enumerate(stages):
        errors += check_stage(draft, f"stages[{index}].")
    return errors + check_stage_set([s.kind for s in stages])


def check_reorder(pipeline: Pipeline, stage_ids: Sequence[UUID]) -> list[FieldError]:
    """A new order must name every active stage of the pipeline exactly once."""
    active = {s.id for s in pipeline.active_stages()}
    if len(stage_ids) != len(set(stage_ids)) or set(stage_ids) != active:
        return [FieldError("stage_ids", "every active stage of the pipeline, each once")]
    return []


def check_archive_stage(pipeline: Pipeline, stage: Stage, open_deals: int,
                        move_to: UUID | None) -> Stage | None:
    """The stage the archived stage's open deals move to (None when they need not move);
    InvalidFields when the move is missing or not to an active open stage of the same pipeline."""
    remaining = [s.kind for s in pipeline.active_stages() if s.id != stage.id]
    errors = [] if StageKind.OPEN in remaining else [
        FieldError("stage_id", "a pipeline keeps at least one open stage")]
    target = None
    if move_to is not None:
        target = pipeline.stage(move_to)
        if target is None or target.archived or target.id == stage.id or target.kind is not StageKind.OPEN:
            errors.append(FieldError("move_deals_to", "another active open stage of the same pipeline"))
    elif open_deals:
        errors.append(FieldError("move_deals_to",
                                 f"the stage has {open_deals} open deals: name the stage they move to"))
    if errors:
        raise InvalidFields(errors)
    return target if open_deals else None


# --- Deals -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineItemDraft:
    """A line item as the caller sent it; ``currency``, when given, must be the deal's."""

    product: str
    quantity: int
    unit_price_minor: int
    discount_minor: int = 0
    currency: str | None = None

    def item(self) -> LineItem:
        return LineItem(self.product, self.quantity, self.unit_price_minor, self.discount_minor)


def line_items_total(items: Sequence[LineItem]) -> int:
    """The sum of quantity * unit price - discount; exact, in the deal's minor units."""
    return sum((item.total_minor for item in items), 0)


def check_line_items(drafts: Sequence[LineItemDraft], currency: str) -> list[FieldError]:
    errors = []
    if len(drafts) > MAX_LINE_ITEMS:
        errors.append(FieldError("line_items", f"at most {MAX_LINE_ITEMS}"))
    for index, draft in enumerate(drafts):
        path = f"line_items[{index}]"
        if not draft.product.strip() or len(draft.product) > MAX_NAME:
            errors.append(FieldError(f"{path}.product", f"between 1 and {MAX_NAME} characters"))
        if not 1 <= draft.quantity <= MAX_QUANTITY:
            errors.append(FieldError(f"{path}.quantity", f"between 1 and {MAX_QUANTITY}"))
        if not 0 <= draft.unit_price_minor <= MAX_MINOR:
            errors.append(FieldError(f"{path}.unit_price_minor", "0 or more minor units"))
        if draft.discount_minor < 0:
            errors.append(FieldError(f"{path}.discount_minor", "0 or more minor units"))
        elif draft.discount_minor > draft.quantity * max(draft.unit_price_minor, 0):
            errors.append(FieldError(f"{path}.discount_minor", "at most quantity * unit price"))
        if draft.currency is not None and draft.currency != currency:
            errors.append(FieldError(f"{path}.currency",
                                     f"line items are in the deal's currency, {currency}"))
    if not errors and line_items_total([d.item() for d in drafts]) > MAX_MINOR:
        errors.append(FieldError("line_items", "the total is too large"))
    return errors


def settle_amount(given: int | None, items: Sequence[LineItem] | None, current: int) -> int:
    """The deal's amount after a write: the line items' total when the deal has any (a given
    amount must agree with it), else the given amount, else the current one."""
    if items:
        total = line_items_total(items)
        if given is not None and given != total:
            raise InvalidFields([FieldError(
                "amount_minor", f"the line items add up to {total}; send that amount or leave it out")])
        return total
    return current if given is None else given


def check_deal(deal: Deal, pipeline: Pipeline) -> list[FieldError]:
    """Every field rule of a deal as it would be stored (not references to other services)."""
    errors = []
    if not deal.title.strip() or len(deal.title) > MAX_TITLE:
        errors.append(FieldError("title", f"between 1 and {MAX_TITLE} characters"))
    if deal.amount_minor < 0:
        errors.append(FieldError("amount_minor", "0 or more minor units"))
    elif deal.amount_minor > MAX_MINOR:
        errors.append(FieldError("amount_minor", "too large"))
    if not is_currency(deal.currency):
        errors.append(FieldError("currency", "an ISO 4217 code such as EUR"))
    stage = pipeline.stage(deal.stage_id)
    if stage is None or stage.archived:
        errors.append(FieldError("stage_id", "an active stage of the deal's pipeline"))
    if len(deal.tags) > MAX_TAGS or any(not t.strip() or len(t) > MAX_TAG for t in deal.tags):
        errors.append(FieldError("tags", f"at most {MAX_TAGS} tags of 1 to {MAX_TAG} characters"))
    if len(deal.participants) > MAX_PARTICIPANTS:
        errors.append(FieldError("participants", f"at most {MAX_PARTICIPANTS}"))
    if len({p.contact_id for p in deal.participants}) != len(deal.participants):
        errors.append(FieldError("participants", "each contact once"))
    if deal.owner_id is not None and not 0 < len(deal.owner_id) <= MAX_NAME:
        errors.append(FieldError("owner_id", f"between 1 and {MAX_NAME} characters"))
    return errors


def initial_stage(pipeline: Pipeline, stage_id: UUID | None) -> Stage:
    """Where a new deal starts: the given open stage of the pipeline, or its first open stage."""
    if stage_id is None:
        first = next((s for s in pipeline.active_stages() if s.kind is StageKind.OPEN), None)
        if first is None:
            raise InvalidFields([FieldError("pipeline_id", "the pipeline has no open stage")])
        return first
    stage = pipeline.stage(stage_id)
    if stage is None or stage.archived:
        raise InvalidFields([FieldError("stage_id", "an active stage of the pipeline")])
    if stage.kind is not StageKind.OPEN:
        raise InvalidFields([FieldError("stage_id",
                                        "a new deal starts in an open stage; win or lose it after")])
    return stage


def seconds_since(since: datetime | None, now: datetime) -> int | None:
    return None if since is None else max(0, int((now - since).total_seconds()))


def enter_stage(deal: Deal, stage: Stage, now: datetime, actor: str) -> tuple[Deal, StageChange]:
    change = StageChange(deal.id, deal.stage_id, stage.id, now, actor,
                         seconds_since(deal.stage_entered_at, now))
    return replace(deal, pipeline_id=stage.pipeline_id, stage_id=stage.id, stage_entered_at=now), change


def move(deal: Deal, pipeline: Pipeline, stage_id: UUID, now: datetime, actor: str
         ) -> tuple[Deal, StageChange | None]:
    """The deal in an open stage of ``pipeline`` (its own or another); a won or lost deal moved
    to an open stage is reopened. Won and lost stages are reached by winning or losing, which
    take a reason. No change (None) when the deal is in that stage already."""
    stage = pipeline.stage(stage_id)
    if stage is None or stage.archived:
        raise InvalidFields([FieldError("stage_id", "an active stage of the pipeline")])
    if stage.kind is not StageKind.OPEN:
        raise InvalidFields([FieldError("stage_id", f"a {stage.kind.value} stage is reached by marking the "
                                                    f"deal {stage.kind.value}")])
    if stage.id == deal.stage_id:
        return deal, None
    moved, change = enter_stage(deal, stage, now, actor)
    if deal.status is not DealStatus.OPEN:
        moved = replace(moved, status=DealStatus.OPEN, close_reason_id=None, close_note=None, closed_at=None)
    return moved, change


def close(deal: Deal, pipeline: Pipeline, outcome: DealStatus, reason: CloseReason | None,
          reasons: Sequence[CloseReason], note: str | None, now: datetime, actor: str
          ) -> tuple[Deal, StageChange | None]:
    """The deal won or lost: in its pipeline's won (lost) stage, with a reason from the
    workspace's list (required when the list has any of that kind) and an optional note."""
    kind = StageKind(outcome.value)
    if deal.status is not DealStatus.OPEN:
        raise Conflict(f"the deal is {deal.status.value} already; move it to an open stage to reopen it")
    errors = []
    stage = pipeline.terminal(kind)
    if stage is None:
        errors.append(FieldError("stage", f"the deal's pipeline has no {kind.value} stage"))
    active = [r for r in reasons if r.kind is outcome and not r.archived]
    if reason is None and active:
        errors.append(FieldError("reason_id", f"one of the workspace's {outcome.value} reasons"))
    if reason is not None and (reason.kind is not outcome or reason.archived):
        errors.append(FieldError("reason_id", f"a {outcome.value} reason of this workspace"))
    if note is not None and len(note) > MAX_NOTE:
        errors.append(FieldError("note", f"at most {MAX_NOTE} characters"))
    if errors:
        raise InvalidFields(errors)
    assert stage is not None
    closed, change = enter_stage(deal, stage, now, actor)
    return replace(closed, status=outcome, close_reason_id=reason.id if reason else None,
                   close_note=note, closed_at=now), change


def normalise_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """Trimmed, each once, in the order given."""
    return tuple(dict.fromkeys(t.strip() for t in tags))


# The fields a deal's PATCH may set; stage, status and closing have their own endpoints.
EDITABLE = ("title", "amount_minor", "currency", "expected_close_date", "owner_id", "contact_id",
            "company_id", "participants", "line_items", "custom_fields", "tags")
_MERGED = ("line_items", "custom_fields", "amount_minor", "tags", "participants")


def revise(deal: Deal, changes: Mapping[str, Any], pipeline: Pipeline,
           definitions: Mapping[str, FieldDefinition]) -> tuple[Deal, list[str]]:
    """The deal with ``changes`` (field -> new value, only the fields the caller sent) applied,
    and the names of the fields that changed; InvalidFields naming every bad field.
    ``line_items`` are LineItemDrafts; ``custom_fields`` merge into the stored ones (None clears)."""
    unknown = [FieldError(name, "not a field a deal's update sets")
               for name in changes if name not in EDITABLE]
    if unknown:
        raise InvalidFields(unknown)
    errors: list[FieldError] = []
    values: dict[str, Any] = {k: v for k, v in changes.items() if k not in _MERGED}
    currency = changes.get("currency", deal.currency)
    items = deal.line_items
    if "line_items" in changes:
        drafts = changes["line_items"]
        errors += check_line_items(drafts, currency)
        items = tuple(d.item() for d in drafts)
    elif "currency" in changes and deal.line_items and currency != deal.currency:
        errors.append(FieldError("currency",
                                 "the deal has line items in its currency; send them again with it"))
    if "custom_fields" in changes:
        clean, field_errors = validate_custom(dict(definitions), changes["custom_fields"])
        errors += field_errors
        values["custom_fields"] = {k: v for k, v in {**deal.custom_fields, **clean}.items() if v is not None}
    if "tags" in changes:
        values["tags"] = normalise_tags(changes["tags"])
    if "participants" in changes:
        values["participants"] = tuple(changes["participants"])
    given = changes.get("amount_minor")
    if not errors:
        try:
            values["amount_minor"] = settle_amount(given, items, deal.amount_minor)
        except InvalidFields as exc:
            errors += exc.errors
    elif given is not None:
        values["amount_minor"] = given
    revised = replace(deal, line_items=items, **values)
    errors += check_deal(revised, pipeline)
    if errors:
        raise InvalidFields(_unique(errors))
    changed = [name for name in EDITABLE if getattr(revised, name) != getattr(deal, name)]
    if "custom_fields" in changed:
        changed.remove("custom_fields")
        keys = set(revised.custom_fields) | set(deal.custom_fields)
        changed += sorted(f"custom_fields.{k}" for k in keys
                          if revised.custom_fields.get(k) != deal.custom_fields.get(k))
    return revised, changed


def _unique(errors: list[FieldError]) -> list[FieldError]:
    return list(dict.fromkeys(errors))

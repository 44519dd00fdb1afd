"""Pipeline's domain values. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class InteractionSeen:
    contact_id: UUID
    occurred_at: datetime


@dataclass(frozen=True)
class ContactMerge:
    """Contacts merged ``loser_id`` into ``survivor_id``: its activity is the survivor's now."""

    loser_id: UUID
    survivor_id: UUID


@dataclass(frozen=True)
class ActivityDelta:
    """What a batch of interactions adds to one contact's activity."""

    workspace_id: str
    contact_id: UUID
    count: int
    last_at: datetime


def sum_activity(seen: list[tuple[str, InteractionSeen]]) -> list[ActivityDelta]:
    """One delta per (workspace, contact): how many interactions, and the latest."""
    totals: dict[tuple[str, UUID], ActivityDelta] = {}
    for workspace_id, item in seen:
        key = (workspace_id, item.contact_id)
        known = totals.get(key)
        totals[key] = ActivityDelta(
            workspace_id, item.contact_id, (known.count if known else 0) + 1,
            max(known.last_at, item.occurred_at) if known else item.occurred_at)
    return list(totals.values())


@dataclass(frozen=True)
class ContactActivity:
    contact_id: UUID
    interaction_count: int
    last_activity_at: datetime


# --- Pipelines, stages and deals (tables in migrations/002_deals.sql) ---------------------------


class StageKind(StrEnum):
    """Open stages hold deals being worked; won and lost are terminal (a deal there is closed)."""

    OPEN = "open"
    WON = "won"
    LOST = "lost"


class DealStatus(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


@dataclass(frozen=True)
class Stage:
    id: UUID
    pipeline_id: UUID
    name: str
    position: int
    probability: int  # 0-100, the chance a deal in this stage is won
    kind: StageKind = StageKind.OPEN
    rotting_days: int | None = None  # days without activity before an open deal rots; None: never
    archived: bool = False


@dataclass(frozen=True)
class Pipeline:
    id: UUID
    workspace_id: str
    name: str
    position: int
    stages: tuple[Stage, ...]  # in board order, archived ones included
    version: int = 1
    archived: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def active_stages(self) -> tuple[Stage, ...]:
        return tuple(s for s in self.stages if not s.archived)

    def stage(self, stage_id: UUID) -> Stage | None:
        return next((s for s in self.stages if s.id == stage_id), None)

    def terminal(self, kind: StageKind) -> Stage | None:
        """The pipeline's (unarchived) won or lost stage, if it has one."""
        return next((s for s in self.active_stages() if s.kind is kind), None)


@dataclass(frozen=True)
class LineItem:
    """A product on a deal, in the deal's currency: quantity * unit price - discount."""

    product: str
    quantity: int
    unit_price_minor: int
    discount_minor: int = 0

    @property
    def total_minor(self) -> int:
        return self.quantity * self.unit_price_minor - self.discount_minor


@dataclass(frozen=True)
class Participant:
    contact_id: UUID
    role: str = ""


@dataclass(frozen=True)
class CloseReason:
    id: UUID
    kind: DealStatus  # WON or LOST
    label: str
    archived: bool = False


@dataclass(frozen=True)
class Deal:
    id: UUID
    workspace_id: str
    pipeline_id: UUID
    stage_id: UUID
    title: str
    amount_minor: int
    currency: str
    expected_close_date: date | None = None
    owner_id: str | None = None
    contact_id: UUID | None = None
    company_id: UUID | None = None
    status: DealStatus = DealStatus.OPEN
    close_reason_id: UUID | None = None
    close_note: str | None = None
    closed_at: datetime | None = None
    stage_entered_at: datetime | None = None
    last_activity_at: datetime | None = None
    custom_fields: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    participants: tuple[Participant, ...] = ()
    line_items: tuple[LineItem, ...] = ()
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class StageChange:
    """A deal entering ``to_stage_id``; ``seconds_in_from`` is how long it sat in the stage it
    left (None when the deal was created there)."""

    deal_id: UUID
    from_stage_id: UUID | None
    to_stage_id: UUID
    at: datetime
    actor: str
    seconds_in_from: int | None

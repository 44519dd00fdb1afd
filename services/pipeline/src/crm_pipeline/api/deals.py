"""Deals under /v1: CRUD with If-Match, stage moves, won/lost, stage history, the kanban board,
and the definitions of deals' custom fields."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_pipeline.api.pipelines import PipelineOut, StageOut
from crm_pipeline.domain.deals import LineItemDraft
from crm_pipeline.domain.errors import FieldError, InvalidFields
from crm_pipeline.domain.model import Deal, DealStatus, LineItem, Participant, StageChange
from crm_pipeline.service.deals import Column, Deals, StageTotals
from crm_pipeline.store.deals import ENTITY, DealFilter
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.fields import FieldDefinitionIn, FieldDefinitionOut, FieldDefinitionsOut
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["deals"])

Reader = Annotated[Principal, Depends(require("pipeline:read"))]
Writer = Annotated[Principal, Depends(require("pipeline:write"))]
Admin = Annotated[Principal, Depends(require("pipeline:admin"))]
IfMatch = Annotated[str | None, Header(max_length=100)]
Service = Annotated[Deals, Depends(state("deals", Deals))]
Cursor = Annotated[str | None, Query(max_length=500)]
MAX_PAGE = 100


class ParticipantIO(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contact_id: UUID
    role: str = Field(default="", max_length=100)


class LineItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product: str = Field(max_length=200)
    quantity: int
    unit_price_minor: int
    discount_minor: int = 0
    currency: str | None = Field(default=None, description="If sent, the deal's currency")

    def draft(self) -> LineItemDraft:
        return LineItemDraft(self.product, self.quantity, self.unit_price_minor, self.discount_minor,
                             self.currency)


class LineItemOut(BaseModel):
    product: str
    quantity: int
    unit_price_minor: int
    discount_minor: int
    total_minor: int

    @classmethod
    def of(cls, item: LineItem) -> LineItemOut:
        return cls(product=item.product, quantity=item.quantity, unit_price_minor=item.unit_price_minor,
                   discount_minor=item.discount_minor, total_minor=item.total_minor)


class DealFields(BaseModel):
    """The fields a deal's create and PATCH set; on PATCH those not sent stay."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, max_length=300)
    amount_minor: int | None = Field(default=None, description="Integer minor units (cents); the line "
                                                               "items' total when there are any")
    currency: str | None = Field(default=None, max_length=16, description="ISO 4217, e.g. EUR")
    expected_close_date: date | None = None
    owner_id: str | None = Field(default=None, max_length=200)
    contact_id: UUID | None = Field(default=None, description="The primary contact, checked with contacts")
    company_id: UUID | None = Field(default=None, description="Checked with contacts")
    participants: list[ParticipantIO] | None = Field(default=None, max_length=100)
    line_items: list[LineItemIn] | None = Field(default=None, max_length=200)
    custom_fields: dict[str, Any] | None = Field(default=None, description="Values by key of the fields at "
                                                                           "/v1/deal-fields; null clears one")
    tags: list[str] | None = Field(default=None, max_length=50)

    def changes(self) -> dict[str, Any]:
        """The fields sent, in the domain's types; 422 for a null where one is not allowed."""
        sent = self.model_dump(exclude_unset=True)
        nulls = [FieldError(k, "cannot be null") for k in
                 ("title", "currency", "participants", "line_items", "custom_fields", "tags")
                 if k in sent and sent[k] is None]
        if nulls:
            raise InvalidFields(nulls)
        if "participants" in sent:
            sent["participants"] = [Participant(p.contact_id, p.role) for p in self.participants or []]
        if "line_items" in sent:
            sent["line_items"] = [i.draft() for i in self.line_items or []]
        return sent


class DealIn(DealFields):
    pipeline_id: UUID
    stage_id: UUID | None = Field(default=None, description="An open stage; the pipeline's first if left out")
    title: str = Field(max_length=300)
    currency: str = Field(max_length=16, description="ISO 4217, e.g. EUR")


class DealOut(BaseModel):
    id: UUID
    pipeline_id: UUID
    stage_id: UUID
    title: str
    amount_minor: int
    currency: str
    expected_close_date: date | None
    owner_id: str | None
    contact_id: UUID | None
    company_id: UUID | None
    participants: list[ParticipantIO]
    line_items: list[LineItemOut]
    status: DealStatus
    close_reason_id: UUID | None
    close_note: str | None
    closed_at: datetime | None
    stage_entered_at: datetime | None
    last_activity_at: datetime | None
    custom_fields: dict[str, Any]
    tags: list[str]
    version: int
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, deal: Deal) -> DealOut:
        return cls(
            id=deal.id, pipeline_id=deal.pipeline_id, stage_id=deal.stage_id, title=deal.title,
            amount_minor=deal.amount_minor, currency=deal.currency,
            expected_close_date=deal.expected_close_date,
            owner_id=deal.owner_id, contact_id=deal.contact_id, company_id=deal.company_id,
            participants=[ParticipantIO(contact_id=p.contact_id, role=p.role) for p in deal.participants],
            line_items=[LineItemOut.of(i) for i in deal.line_items], status=deal.status,
            close_reason_id=deal.close_reason_id, close_note=deal.close_note, closed_at=deal.closed_at,
            stage_entered_at=deal.stage_entered_at, last_activity_at=deal.last_activity_at,
            custom_fields=dict(deal.custom_fields), tags=list(deal.tags), version=deal.version,
            created_at=deal.created_at, updated_at=deal.updated_at)


class DealPageOut(BaseModel):
    items: list[DealOut]
    next_cursor: str | None


class MoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage_id: UUID
    pipeline_id: UUID | None = Field(default=None, description="To move into another pipeline")


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason_id: UUID | None = Field(default=None, description="From /v1/close-reasons; required once the "
                                                             "workspace has reasons of this kind")
    note: str | None = Field(default=None, max_length=2000)


class StageChangeOut(BaseModel):
    from_stage_id: UUID | None
    to_stage_id: UUID
    at: datetime
    actor: str
    seconds_in_from: int | None = Field(description="How long the deal sat in from_stage_id")

    @classmethod
    def of(cls, change: StageChange) -> StageChangeOut:
        return cls(from_stage_id=change.from_stage_id, to_stage_id=change.to_stage_id, at=change.at,
                   actor=change.actor, seconds_in_from=change.seconds_in_from)


class StageHistoryOut(BaseModel):
    items: list[StageChangeOut]


def _shown(deal: Deal, response: Response) -> DealOut:
    response.headers["ETag"] = etag(deal.version)
    return DealOut.of(deal)


@router.post("/deals", response_model=DealOut, status_code=201,
             responses={422: {"description": "A bad field, an unknown pipeline, stage, contact or company"}})
async def create_deal(body: DealIn, caller: Writer, deals: Service, response: Response) -> DealOut:
    changes = body.changes()
    pipeline_id, stage_id = changes.pop("pipeline_id"), changes.pop("stage_id", None)
    deal = await deals.create(caller.workspace_id, caller.subject, pipeline_id, stage_id, changes)
    return _shown(deal, response)


@router.get("/deals", response_model=DealPageOut)
async def list_deals(
    caller: Reader, deals: Service,
    pipeline: UUID | None = None, stage: UUID | None = None,
    owner: Annotated[str | None, Query(max_length=200)] = None, status: DealStatus | None = None,
    cursor: Cursor = None, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> DealPageOut:
    """Oldest first."""
    items, next_cursor = await deals.page(caller.workspace_id, DealFilter(pipeline, stage, owner, status),
                                          cursor, limit)
    return DealPageOut(items=[DealOut.of(d) for d in items], next_cursor=next_cursor)


@router.get("/deals/{deal_id}", response_model=DealOut)
async def get_deal(deal_id: UUID, caller: Reader, deals: Service, response: Response) -> DealOut:
    return _shown(await deals.get(caller.workspace_id, deal_id), response)


@router.patch("/deals/{deal_id}", response_model=DealOut)
async def update_deal(deal_id: UUID, body: DealFields, caller: Writer, deals: Service, response: Response,
                      if_match: IfMatch = None) -> DealOut:
    """Needs If-Match (428 without, 412 when stale). Stage and status change through /stage,
    /won and /lost."""
    version = expected_version(if_match)
    deal = await deals.update(caller.workspace_id, caller.subject, deal_id, body.changes(), version)
    return _shown(deal, response)


@router.delete("/deals/{deal_id}", status_code=204)
async def delete_deal(deal_id: UUID, caller: Writer, deals: Service, if_match: IfMatch = None) -> Response:
    await deals.delete(caller.workspace_id, caller.subject, deal_id, expected_version(if_match))
    return Response(status_code=204)


def _optional_version(if_match: str | None) -> int | None:
    return None if if_match is None else expected_version(if_match)


@router.post("/deals/{deal_id}/stage", response_model=DealOut)
async def move_deal(deal_id: UUID, body: MoveIn, caller: Writer, deals: Service, response: Response,
                    if_match: IfMatch = None) -> DealOut:
    """Into an open stage (a won or lost deal reopens); recorded with who, when and how long the
    deal sat in the stage it left. If-Match is optional here."""
    deal = await deals.move(caller.workspace_id, caller.subject, deal_id, body.stage_id, body.pipeline_id,
                            _optional_version(if_match))
    return _shown(deal, response)


@router.post("/deals/{deal_id}/won", response_model=DealOut,
             responses={409: {"description": "The deal is closed already"}})
async def win_deal(deal_id: UUID, body: CloseIn, caller: Writer, deals: Service, response: Response,
                   if_match: IfMatch = None) -> DealOut:
    """Into the pipeline's won stage (422 when it has none), with a reason and a note."""
    deal = await deals.close(caller.workspace_id, caller.subject, deal_id, DealStatus.WON, body.reason_id,
                             body.note, _optional_version(if_match))
    return _shown(deal, response)


@router.post("/deals/{deal_id}/lost", response_model=DealOut,
             responses={409: {"description": "The deal is closed already"}})
async def lose_deal(deal_id: UUID, body: CloseIn, caller: Writer, deals: Service, response: Response,
                    if_match: IfMatch = None) -> DealOut:
    """Into the pipeline's lost stage (422 when it has none), with a reason and a note."""
    deal = await deals.close(caller.workspace_id, caller.subject, deal_id, DealStatus.LOST, body.reason_id,
                             body.note, _optional_version(if_match))
    return _shown(deal, response)


@router.get("/deals/{deal_id}/stage-history", response_model=StageHistoryOut)
async def stage_history(deal_id: UUID, caller: Reader, deals: Service) -> StageHistoryOut:
    """Every stage the deal entered, oldest first (the first with no from_stage_id: its creation)."""
    return StageHistoryOut(items=[StageChangeOut.of(c)
                                  for c in await deals.stage_history(caller.workspace_id, deal_id)])


# --- the board ---


class TotalsOut(BaseModel):
    count: int
    amount_base_minor: int = Field(description="In the base currency at today's rates")
    weighted_base_minor: int = Field(description="amount_base_minor times the stage's probability")
    unconverted_currencies: list[str] = Field(description="Currencies without a rate: counted, not summed")

    @classmethod
    def of(cls, totals: StageTotals) -> TotalsOut:
        return cls(count=totals.count, amount_base_minor=totals.amount_base_minor,
                   weighted_base_minor=totals.weighted_base_minor,
                   unconverted_currencies=list(totals.unconverted))


class ColumnOut(BaseModel):
    stage: StageOut
    deals: list[DealOut]
    next_cursor: str | None = Field(description="For /board/stages/{stage_id}?cursor=")
    totals: TotalsOut

    @classmethod
    def of(cls, column: Column) -> ColumnOut:
        return cls(stage=StageOut.of(column.stage), deals=[DealOut.of(d) for d in column.deals],
                   next_cursor=column.next_cursor, totals=TotalsOut.of(column.totals))


class BoardOut(BaseModel):
    pipeline: PipelineOut
    base_currency: str
    stages: list[ColumnOut]


class ColumnPageOut(BaseModel):
    items: list[DealOut]
    next_cursor: str | None


@router.get("/pipelines/{pipeline_id}/board", response_model=BoardOut)
async def board(pipeline_id: UUID, caller: Reader, deals: Service,
                per_stage: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20) -> BoardOut:
    """The pipeline's active stages in order, each with its first deals and its totals."""
    shown = await deals.board(caller.workspace_id, pipeline_id, per_stage)
    return BoardOut(pipeline=PipelineOut.of(shown.pipeline), base_currency=shown.base_currency,
                    stages=[ColumnOut.of(c) for c in shown.columns])


@router.get("/pipelines/{pipeline_id}/board/stages/{stage_id}", response_model=ColumnPageOut)
async def board_stage(pipeline_id: UUID, stage_id: UUID, caller: Reader, deals: Service,
                      cursor: Cursor = None,
                      per_stage: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20) -> ColumnPageOut:
    """The next deals of one board column."""
    items, next_cursor = await deals.board_stage(caller.workspace_id, pipeline_id, stage_id, cursor,
                                                 per_stage)
    return ColumnPageOut(items=[DealOut.of(d) for d in items], next_cursor=next_cursor)


# --- custom fields ---


@router.get("/deal-fields", response_model=FieldDefinitionsOut)
async def list_fields(caller: Reader, deals: Service) -> FieldDefinitionsOut:
    return FieldDefinitionsOut.of(await deals.fields(caller.workspace_id))


@router.post("/deal-fields", response_model=FieldDefinitionOut, status_code=201,
             responses={409: {"description": "The key is defined already"}})
async def define_field(body: FieldDefinitionIn, caller: Admin, deals: Service) -> FieldDefinitionOut:
    """Define a custom field of the workspace's deals; set values with the deal's PATCH."""
    return FieldDefinitionOut.of(await deals.define_field(caller.workspace_id, body.definition(ENTITY)))


@router.delete("/deal-fields/{key}", status_code=204)
async def remove_field(key: str, caller: Admin, deals: Service) -> Response:
    """The values stay on the deals but are no longer shown or accepted."""
    await deals.remove_field(caller.workspace_id, key)
    return Response(status_code=204)

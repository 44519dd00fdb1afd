"""The sales setup under /v1: pipelines and their stages, close reasons, the base currency and
exchange rates. Reading needs pipeline:read; changing needs pipeline:admin."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_pipeline.domain.deals import StageDraft
from crm_pipeline.domain.errors import FieldError, InvalidFields
from crm_pipeline.domain.model import CloseReason, DealStatus, Pipeline, Stage, StageKind
from crm_pipeline.domain.money import parse_rate
from crm_pipeline.service.pipelines import Pipelines
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["pipelines"])

Reader = Annotated[Principal, Depends(require("pipeline:read"))]
Admin = Annotated[Principal, Depends(require("pipeline:admin"))]
IfMatch = Annotated[str | None, Header(max_length=100)]
Service = Annotated[Pipelines, Depends(state("pipelines", Pipelines))]


class StageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200)
    probability: int | None = Field(default=None, description="0-100; defaults to 100 for won, 0 else")
    kind: StageKind = StageKind.OPEN
    rotting_days: int | None = Field(default=None, description="Days without activity before an open "
                                                               "deal rots; null: never")

    def draft(self) -> StageDraft:
        return StageDraft(self.name, self.probability, self.kind, self.rotting_days)


class NewStageIn(StageIn):
    position: int | None = Field(default=None, ge=0,
                                 description="Among the active stages; the end if left out")


class StageUpdate(BaseModel):
    """The fields sent change; a stage's kind never does."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    probability: int | None = None
    rotting_days: int | None = Field(default=None, description="null: never rots")


class StageOut(BaseModel):
    id: UUID
    name: str
    position: int
    probability: int
    kind: StageKind
    rotting_days: int | None
    archived: bool

    @classmethod
    def of(cls, stage: Stage) -> StageOut:
        return cls(id=stage.id, name=stage.name, position=stage.position, probability=stage.probability,
                   kind=stage.kind, rotting_days=stage.rotting_days, archived=stage.archived)


class PipelineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200)
    stages: list[StageIn] = Field(max_length=50, description="In board order: open ones, then at most one "
                                                             "won and one lost")


class PipelineUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200)


class PipelineOut(BaseModel):
    id: UUID
    name: str
    position: int
    archived: bool
    version: int
    stages: list[StageOut] = Field(description="Active stages in board order, then archived ones")
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, pipeline: Pipeline) -> PipelineOut:
        return cls(id=pipeline.id, name=pipeline.name, position=pipeline.position, archived=pipeline.archived,
                   version=pipeline.version, stages=[StageOut.of(s) for s in pipeline.stages],
                   created_at=pipeline.created_at, updated_at=pipeline.updated_at)


class PipelinesOut(BaseModel):
    items: list[PipelineOut]


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage_ids: list[UUID] = Field(max_length=50,
                                  description="Every active stage, each once, in the new order")


def _shown(pipeline: Pipeline, response: Response) -> PipelineOut:
    response.headers["ETag"] = etag(pipeline.version)
    return PipelineOut.of(pipeline)


@router.post("/pipelines", response_model=PipelineOut, status_code=201)
async def create_pipeline(body: PipelineIn, caller: Admin, service: Service,
                          response: Response) -> PipelineOut:
    pipeline = await service.create(caller.workspace_id, body.name, [s.draft() for s in body.stages])
    return _shown(pipeline, response)


@router.get("/pipelines", response_model=PipelinesOut)
async def list_pipelines(caller: Reader, service: Service,
                         archived: Annotated[bool, Query(description="Archived ones too")] = False
                         ) -> PipelinesOut:
    return PipelinesOut(items=[PipelineOut.of(p) for p in await service.all(caller.workspace_id, archived)])


@router.get("/pipelines/{pipeline_id}", response_model=PipelineOut)
async def get_pipeline(pipeline_id: UUID, caller: Reader, service: Service,
                       response: Response) -> PipelineOut:
    return _shown(await service.get(caller.workspace_id, pipeline_id), response)


@router.patch("/pipelines/{pipeline_id}", response_model=PipelineOut)
async def rename_pipeline(pipeline_id: UUID, body: PipelineUpdate, caller: Admin, service: Service,
                          response: Response, if_match: IfMatch = None) -> PipelineOut:
    pipeline = await service.rename(caller.workspace_id, pipeline_id, body.name, expected_version(if_match))
    return _shown(pipeline, response)


@router.delete("/pipelines/{pipeline_id}", status_code=204,
               responses={409: {"description": "The pipeline has open deals"}})
async def archive_pipeline(pipeline_id: UUID, caller: Admin, service: Service,
                           if_match: IfMatch = None) -> Response:
    """Archives it: its deals and history stay. Only without open deals."""
    await service.archive(caller.workspace_id, pipeline_id, expected_version(if_match))
    return Response(status_code=204)


@router.post("/pipelines/{pipeline_id}/stages", response_model=PipelineOut, status_code=201)
async def add_stage(pipeline_id: UUID, body: NewStageIn, caller: Admin, service: Service,
                    response: Response) -> PipelineOut:
    pipeline = await service.add_stage(caller.workspace_id, pipeline_id, body.draft(), body.position)
    return _shown(pipeline, response)


@router.patch("/pipelines/{pipeline_id}/stages/{stage_id}", response_model=PipelineOut)
async def edit_stage(pipeline_id: UUID, stage_id: UUID, body: StageUpdate, caller: Admin, service: Service,
                     response: Response) -> PipelineOut:
    """Rename, change the probability or the rotting threshold; deals stay where they are."""
    changes = body.model_dump(exclude_unset=True)
    for name in ("name", "probability"):
        if name in changes and changes[name] is None:
            raise InvalidFields([FieldError(name, "cannot be null")])
    pipeline = await service.edit_stage(caller.workspace_id, pipeline_id, stage_id, changes)
    return _shown(pipeline, response)


@router.put("/pipelines/{pipeline_id}/stage-order", response_model=PipelineOut)
async def reorder_stages(pipeline_id: UUID, body: OrderIn, caller: Admin, service: Service,
                         response: Response) -> PipelineOut:
    return _shown(await service.reorder(caller.workspace_id, pipeline_id, body.stage_ids), response)


@router.delete("/pipelines/{pipeline_id}/stages/{stage_id}", response_model=PipelineOut)
async def archive_stage(
    pipeline_id: UUID, stage_id: UUID, caller: Admin, service: Service, response: Response,
    move_deals_to: Annotated[UUID | None, Query(description="Required when the stage has open deals: "
                                                            "an open stage of the same pipeline")] = None,
) -> PipelineOut:
    """Archive the stage. Its open deals move to ``move_deals_to`` in the same transaction, each
    move recorded in the deal's stage history and published as deal.stage_changed."""
    pipeline = await service.archive_stage(caller.workspace_id, caller.subject, pipeline_id, stage_id,
                                           move_deals_to)
    return _shown(pipeline, response)


# --- close reasons ---


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: DealStatus = Field(description="won or lost")
    label: str = Field(max_length=200)


class ReasonUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str | None = Field(default=None, max_length=200)
    archived: bool | None = None


class ReasonOut(BaseModel):
    id: UUID
    kind: DealStatus
    label: str
    archived: bool

    @classmethod
    def of(cls, reason: CloseReason) -> ReasonOut:
        return cls(id=reason.id, kind=reason.kind, label=reason.label, archived=reason.archived)


class ReasonsOut(BaseModel):
    items: list[ReasonOut]


@router.get("/close-reasons", response_model=ReasonsOut)
async def list_reasons(caller: Reader, service: Service) -> ReasonsOut:
    return ReasonsOut(items=[ReasonOut.of(r) for r in await service.reasons(caller.workspace_id)])


@router.post("/close-reasons", response_model=ReasonOut, status_code=201)
async def add_reason(body: ReasonIn, caller: Admin, service: Service) -> ReasonOut:
    """A reason deals are won or lost for; once the workspace has one of a kind, winning (losing)
    a deal must name one."""
    return ReasonOut.of(await service.add_reason(caller.workspace_id, body.kind, body.label))


@router.patch("/close-reasons/{reason_id}", response_model=ReasonOut)
async def edit_reason(reason_id: UUID, body: ReasonUpdate, caller: Admin, service: Service) -> ReasonOut:
    """Rename or archive (no longer offered; deals closed with it keep it)."""
    return ReasonOut.of(await service.edit_reason(caller.workspace_id, reason_id, body.label, body.archived))


# --- currency ---


class CurrencyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currency: str = Field(max_length=16, description="ISO 4217, e.g. EUR")


class CurrencyOut(BaseModel):
    currency: str


class RateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: str = Field(max_length=30, description="Units of the base currency per unit of this one, as a "
                                                 "decimal string: \"1.0842\"")


class RateOut(BaseModel):
    currency: str
    valid_on: date
    rate: str


class RatesOut(BaseModel):
    items: list[RateOut]


@router.get("/settings/currency", response_model=CurrencyOut)
async def get_currency(caller: Reader, service: Service) -> CurrencyOut:
    return CurrencyOut(currency=await service.base_currency(caller.workspace_id))


@router.put("/settings/currency", response_model=CurrencyOut)
async def set_currency(body: CurrencyIn, caller: Admin, service: Service) -> CurrencyOut:
    """The currency reports and the board convert amounts into (EUR until set)."""
    return CurrencyOut(currency=await service.set_base_currency(caller.workspace_id, body.currency))


@router.put("/exchange-rates/{currency}/{on}", response_model=RateOut)
async def set_rate(currency: str, on: date, body: RateIn, caller: Admin, service: Service) -> RateOut:
    """The rate from ``on`` until the next dated one."""
    try:
        rate = parse_rate(body.rate)
    except ValueError as exc:
        raise InvalidFields([FieldError("rate", str(exc))]) from exc
    await service.set_rate(caller.workspace_id, currency, on, rate)
    return RateOut(currency=currency, valid_on=on, rate=_plain(rate))


@router.get("/exchange-rates/{currency}", response_model=RatesOut)
async def list_rates(currency: str, caller: Reader, service: Service) -> RatesOut:
    """Newest first."""
    rates = await service.rates(caller.workspace_id, currency)
    return RatesOut(items=[RateOut(currency=currency, valid_on=d, rate=_plain(r)) for d, r in rates])


def _plain(rate: Decimal) -> str:
    return format(rate.normalize(), "f")

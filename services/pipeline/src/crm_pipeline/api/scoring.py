"""Lead scoring over HTTP: the workspace's model (read with `pipeline:read`, replaced with
`pipeline:admin` and If-Match), a contact's score with its explanation, and the top scores."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from pydantic import BaseModel

from crm_pipeline.domain.scoring import ScoringModel, model_to_dict
from crm_pipeline.service.scoring import LeadScoring
from crm_pipeline.store.scoring import StoredScore
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.problems import NotFound
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["lead scoring"])
Reader = Annotated[Principal, Depends(require("pipeline:read"))]
Admin = Annotated[Principal, Depends(require("pipeline:admin"))]
Scoring = Annotated[LeadScoring, Depends(state("lead_scoring", LeadScoring))]
IfMatch = Annotated[str | None, Header(max_length=100)]
MAX_PAGE = 100

MODEL_EXAMPLE = {
    "rules": [
        {"id": "is-lead", "kind": "attribute", "field": "lifecycle_stage", "op": "in",
         "value": ["lead", "mql"], "points": 10},
        {"id": "big-company", "kind": "attribute", "field": "custom_fields.employees", "op": "gte",
         "value": 500, "points": 15},
        {"id": "opens", "kind": "behaviour", "event": "email_opened", "points": 2, "cap": 20,
         "half_life_days": 14},
        {"id": "orders", "kind": "behaviour", "event": "order_placed", "points": 25, "half_life_days": 90},
    ],
    "thresholds": [50, 80],
}
ModelBody = Annotated[dict[str, Any], Body(openapi_examples={"model": {"value": MODEL_EXAMPLE}})]


class EventOut(BaseModel):
    event_id: str
    occurred_at: datetime
    points: float


class ContributionOut(BaseModel):
    rule_id: str
    kind: str
    points: float
    # Behaviour rules: how many events, and the heaviest of them (at most 20).
    event_count: int
    capped: bool
    events: list[EventOut]


class LeadScoreOut(BaseModel):
    contact_id: UUID
    score: float
    computed_at: datetime
    model_version: int
    contributions: list[ContributionOut]

    @classmethod
    def of(cls, row: StoredScore) -> LeadScoreOut:
        return cls(contact_id=row.contact_id, score=float(row.score), computed_at=row.computed_at,
                   model_version=row.model_version,
                   contributions=[ContributionOut(
                       rule_id=c.rule_id, kind=c.kind, points=float(c.points), event_count=c.event_count,
                       capped=c.capped, events=[EventOut(event_id=e.event_id, occurred_at=e.occurred_at,
                                                         points=float(e.points)) for e in c.events])
                                  for c in row.contributions])


class RankedOut(BaseModel):
    contact_id: UUID
    score: float
    computed_at: datetime
    model_version: int


class LeadScorePageOut(BaseModel):
    items: list[RankedOut]
    next_cursor: str | None


def _model_out(model: ScoringModel, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = etag(model.version)
    return {"version": model.version, **model_to_dict(model)}


@router.get("/lead-scoring/model")
async def get_model(caller: Reader, scoring: Scoring, response: Response) -> dict[str, Any]:
    """The workspace's scoring model; version 0 (ETag "0") and no rules when none was saved."""
    return _model_out(await scoring.model(caller.workspace_id), response)


@router.put("/lead-scoring/model")
async def put_model(body: ModelBody, caller: Admin, scoring: Scoring, response: Response,
                    if_match: IfMatch = None) -> dict[str, Any]:
    """Replace the model (If-Match: its ETag, "0" for the first). Scores are computed again in
    the background within seconds; each shows the model version it was computed under."""
    version = expected_version(if_match)
    model = await scoring.save_model(caller.workspace_id, body, version, caller.subject)
    return _model_out(model, response)


@router.get("/contacts/{contact_id}/lead-score", response_model=LeadScoreOut)
async def contact_lead_score(contact_id: UUID, caller: Reader, scoring: Scoring) -> LeadScoreOut:
    row = await scoring.contact_score(caller.workspace_id, contact_id)
    if row is None:
        raise NotFound("lead score for this contact")
    return LeadScoreOut.of(row)


@router.get("/lead-scores", response_model=LeadScorePageOut)
async def top_lead_scores(
    caller: Reader, scoring: Scoring,
    minimum: Annotated[Decimal | None, Query(alias="min", ge=-1_000_000, le=1_000_000)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> LeadScorePageOut:
    """Contacts by score, highest first; ``min`` keeps those at or above it."""
    page = await scoring.top(caller.workspace_id, minimum, cursor, limit)
    items = [RankedOut(contact_id=r.contact_id, score=float(r.score), computed_at=r.computed_at,
                       model_version=r.model_version) for r in page.items]
    return LeadScorePageOut(items=items, next_cursor=page.next_cursor)

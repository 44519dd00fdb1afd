"""CSAT over HTTP: a ticket's surveys for agents, and the public link the requester answers
(``/v1/public/csat/{token}``: no credentials; the signed token is the credential)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from pydantic import BaseModel

from crm_ticketing.domain.csat import GOOD_FROM, MAX_RATING, MIN_RATING
from crm_ticketing.service.csat import CsatSurveys, survey_state
from crm_ticketing.store.csat import Survey
from crmkit.auth import Principal, require
from crmkit.ratelimit import RateLimiter
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["csat"])
Reader = Annotated[Principal, Depends(require("tickets:read"))]
Csat = Annotated[CsatSurveys, Depends(state("csat", CsatSurveys))]
Token = Annotated[str, Path(min_length=10, max_length=512)]


class SurveyOut(BaseModel):
    id: UUID
    ticket_id: UUID
    state: str
    agent: str | None
    team_id: UUID | None
    created_at: datetime
    expires_at: datetime
    rating: int | None
    comment: str | None
    rated_at: datetime | None

    @classmethod
    def of(cls, survey: Survey, now: datetime) -> SurveyOut:
        return cls(id=survey.id, ticket_id=survey.ticket_id, state=survey_state(survey, now).value,
                   agent=survey.agent, team_id=survey.team_id, created_at=survey.created_at,
                   expires_at=survey.expires_at, rating=survey.rating, comment=survey.comment,
                   rated_at=survey.rated_at)


class SurveysOut(BaseModel):
    items: list[SurveyOut]


@router.get("/tickets/{ticket_id}/csat", response_model=SurveysOut)
async def ticket_surveys(ticket_id: UUID, caller: Reader, csat: Csat) -> SurveysOut:
    """The ticket's surveys, newest first (one per solve): `pending`, `rated`, `expired` or
    `superseded` (a later solve asked again), with the rating and comment once answered."""
    now = datetime.now(UTC)
    surveys = await csat.of_ticket(caller.workspace_id, ticket_id)
    return SurveysOut(items=[SurveyOut.of(s, now) for s in surveys])


# --- the public link -------------------------------------------------------------------------

Limiter = Annotated[RateLimiter, Depends(state("csat_public_limiter", RateLimiter))]


def _within_rate(request: Request, limiter: Limiter) -> None:
    address = request.client.host if request.client else "unknown"
    limiter.check(address, "too many survey requests from this address")


public_router = APIRouter(prefix="/v1/public/csat", tags=["csat (public)"],
                          dependencies=[Depends(_within_rate)])
_PUBLIC_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Not a link this service signed, or no such survey"},
    410: {"description": "Answered, expired, or superseded by a later survey (`state` says which)"},
    429: {"description": "Too many requests from this address"},
}


class Scale(BaseModel):
    min: int = MIN_RATING
    max: int = MAX_RATING
    good_from: int = GOOD_FROM


class PublicSurveyOut(BaseModel):
    subject: str
    scale: Scale
    expires_at: datetime


class RatingIn(BaseModel):
    """Checked by the domain, so that every bad or unknown field is named in one 422."""

    rating: int
    comment: str | None = None


class RatingOut(BaseModel):
    rating: int
    comment: str | None
    rated_at: datetime


@public_router.get("/{token}", response_model=PublicSurveyOut, responses=_PUBLIC_ERRORS)
async def public_survey(token: Token, csat: Csat, response: Response) -> PublicSurveyOut:
    """What the survey page shows: the ticket's subject and the scale (1-5; 4 and 5 are good)."""
    survey, subject = await csat.public_survey(token)
    response.headers["Cache-Control"] = "no-store"
    return PublicSurveyOut(subject=subject, scale=Scale(), expires_at=survey.expires_at)


@public_router.post("/{token}", response_model=RatingOut, responses=_PUBLIC_ERRORS)
async def rate(token: Token, csat: Csat, response: Response,
               body: Annotated[dict[str, Any], Body(openapi_examples={
                   "rating": {"value": {"rating": 5, "comment": "Quick and kind"}}})]) -> RatingOut:
    """`{"rating": 1-5, "comment": optional, at most 2000 characters}`, recorded once: a second
    answer is a 410."""
    survey = await csat.rate(token, body)
    response.headers["Cache-Control"] = "no-store"
    assert survey.rating is not None
    assert survey.rated_at is not None
    return RatingOut(rating=survey.rating, comment=survey.comment, rated_at=survey.rated_at)

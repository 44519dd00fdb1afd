"""Campaigns' domain errors as problem+json: one mapping for the whole service."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from crm_campaigns.domain.errors import (
    CampaignsError,
    Conflict,
    InvalidFields,
    InvalidTransition,
    NotFound,
    VersionMismatch,
)
from crmkit.etags import stale
from crmkit.problems import NotFound as NotFoundProblem
from crmkit.problems import Problem, problem_response


def problem_of(exc: Exception) -> Problem:
    if isinstance(exc, InvalidFields):
        return Problem(422, "validation", "The request is not valid",
                       errors=[e.as_dict() for e in exc.errors])
    if isinstance(exc, NotFound):
        return NotFoundProblem(exc.what)
    if isinstance(exc, VersionMismatch):
        return stale(exc.current)
    if isinstance(exc, InvalidTransition):
        return Problem(422, "invalid-transition", "Not from this status", str(exc), status_now=exc.status)
    if isinstance(exc, Conflict):
        return Problem(409, "conflict", "Conflict", str(exc))
    raise exc


def install_errors(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(problem_of(exc), request)

    app.add_exception_handler(CampaignsError, handle)
